"""vbg's MediaPipe models in torch vs MediaPipe's own runtime, side by side in one run.

MediaPipe (``mediapipe==0.10.14``) lives in a virtual environment of its own (see
benchmarks/common.py); pass that environment's python:

    python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install mediapipe==0.10.14
    python benchmarks/mediapipe_speed.py --mediapipe-python /tmp/mpenv/bin/python [--data DIR]
        [--before /tmp/before]   # also an older checkout of vbg (git worktree add), in the rounds

Both sides segment the same frames of a real webcam-like clip (1280x720) one at a time, mask
returned at frame size, each in a process of its own, and report the median milliseconds per
frame after a warm-up: CPU time (the process's, all threads; the figure compared, as the machine's
load moves wall-clock times) and wall clock. Like with like: MediaPipe's CPU graph runs its
TFLite model on one thread (XNNPACK's default off Android and iOS; its CPU time equals its wall
time), so vbg runs with one torch and one OpenCV thread too (``--threads`` changes vbg's). The
sides take turns, round after round, so that load on the machine hits each of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from common import MEDIAPIPE_SELECTION, ROOT, mediapipe_ms, parse_args

from vbg.images import cover

WARMUP = 5  # frames not timed, on both sides

# Runs with the python of this environment in a checkout of vbg (argv[1], on sys.path): a JSON
# job in argv[2]; prints the wall and CPU milliseconds of each segment() call.
VBG_SIDE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import cv2, numpy as np, torch
from vbg.segmentation.segmenter import load_segmenter
job = json.loads(sys.argv[2])
torch.set_num_threads(job["threads"])
cv2.setNumThreads(job["threads"])
segmenter = load_segmenter(job["model"], weights=None, device="cpu")
times, cpu = [], []
for frame in np.load(job["frames"]):
    started, cpu_started = time.perf_counter(), time.process_time()
    segmenter.segment(frame)
    times.append(1000 * (time.perf_counter() - started))
    cpu.append(1000 * (time.process_time() - cpu_started))
print(json.dumps({"ms": times, "cpu_ms": cpu}))
"""


def read_frames(clip: Path, count: int) -> np.ndarray:
    """The first ``count`` frames of ``clip`` at 1280x720: N x 720 x 1280 x 3 uint8 BGR."""
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cover(frame, 1280, 720))
    capture.release()
    return np.stack(frames)


def vbg_ms(tree: Path, name: str, frames: Path, threads: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of vbg's ``segment`` per frame, the vbg of checkout
    ``tree``, frames from a .npy file (N x H x W x 3 uint8 BGR)."""
    job = {"model": name, "frames": str(frames), "threads": threads}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    side = subprocess.run(
        [sys.executable, "-c", VBG_SIDE, str(tree), json.dumps(job)],
        capture_output=True, text=True, env=env, cwd=tree,
    )  # fmt: skip
    if side.returncode != 0:
        raise RuntimeError(f"vbg's side failed ({tree}):\n{side.stderr.strip()}")
    times = json.loads(side.stdout.strip().splitlines()[-1])
    return statistics.median(times["ms"][WARMUP:]), statistics.median(times["cpu_ms"][WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mediapipe-python", required=True, help="python of the mediapipe venv")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="vbg's torch and OpenCV threads")
    parser.add_argument("--before", type=Path, help="another checkout of vbg, timed alike")
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)

    frames = read_frames(data.clip, args.frames)
    sides = {"vbg": ROOT, **({"vbg before": args.before.resolve()} if args.before else {})}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frames.npy"
        np.save(path, frames)
        for _ in range(args.rounds):  # alternate the sides, so load on the machine hits all
            for name in MEDIAPIPE_SELECTION:
                mediapipe = mediapipe_ms(args.mediapipe_python, name, frames, WARMUP)
                times.setdefault((name, "MediaPipe"), []).append(mediapipe)
                for side, tree in sides.items():
                    times.setdefault((name, side), []).append(
                        vbg_ms(tree, name, path, args.threads)
                    )
    print(
        f"{len(frames)} frames 1280x720 from {data.clip.name}; median ms per frame (mask at "
        f"frame size), CPU time (wall clock), median of {args.rounds} alternating rounds; vbg on "
        f"{args.threads} thread(s), MediaPipe on its default (one)"
    )
    columns = [*sides, "MediaPipe"]
    print(f"{'model':<28}" + "".join(f"{c:>18}" for c in columns) + f"{'ratio':>7}")
    rows: dict[str, dict[str, float]] = {}
    for name in MEDIAPIPE_SELECTION:
        row: dict[str, float] = {}
        line = f"{name:<28}"
        for column in columns:
            wall = statistics.median(t[0] for t in times[(name, column)])
            cpu = statistics.median(t[1] for t in times[(name, column)])
            key = column.replace(" ", "_").lower()
            row[f"{key}_cpu_ms"], row[f"{key}_ms"] = round(cpu, 2), round(wall, 2)
            line += f"{cpu:>10.2f} ({wall:5.2f})"
        row["ratio"] = round(row["vbg_cpu_ms"] / row["mediapipe_cpu_ms"], 2)
        if args.before:
            row["ratio_before"] = round(row["vbg_before_cpu_ms"] / row["mediapipe_cpu_ms"], 2)
        rows[name] = row
        print(f"{line}{row['ratio']:>7.2f}")
    print("ratio: vbg's CPU time over MediaPipe's (below 1: vbg is faster)")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "models": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
