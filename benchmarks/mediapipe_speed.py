"""vbg's MediaPipe models in torch vs MediaPipe's own runtime, side by side in one run.

MediaPipe (``mediapipe==0.10.14``) lives in a virtual environment of its own (see
benchmarks/common.py); pass that environment's python:

    python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install mediapipe==0.10.14
    python benchmarks/mediapipe_speed.py --mediapipe-python /tmp/mpenv/bin/python [--data DIR]

Both sides segment the same frames of a real webcam-like clip (1280x720) one at a time, mask
returned at frame size, and report the median milliseconds per frame after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from common import MEDIAPIPE_SELECTION, mediapipe_ms, parse_args

from vbg.images import cover
from vbg.segmentation.segmenter import load_segmenter

WARMUP = 5  # frames not timed, on both sides


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


def time_vbg(name: str, frames: np.ndarray) -> float:
    segmenter = load_segmenter(name, weights=None, device="cpu")
    times = []
    for i, frame in enumerate(frames):
        started = time.perf_counter()
        segmenter.segment(frame)
        if i >= WARMUP:
            times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mediapipe-python", required=True, help="python of the mediapipe venv")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)

    frames = read_frames(data.clip, args.frames)
    ours: dict[str, list[float]] = {name: [] for name in MEDIAPIPE_SELECTION}
    theirs: dict[str, list[float]] = {name: [] for name in MEDIAPIPE_SELECTION}
    for _ in range(args.rounds):  # alternate the two sides, so load on the machine hits both
        for name in MEDIAPIPE_SELECTION:
            theirs[name].append(mediapipe_ms(args.mediapipe_python, name, frames, WARMUP))
            ours[name].append(time_vbg(name, frames))
    print(
        f"{len(frames)} frames 1280x720 from {data.clip.name}; median ms per frame (mask at "
        f"frame size), median of {args.rounds} alternating rounds"
    )
    print(f"{'model':<28} {'vbg (torch)':>12} {'MediaPipe':>10} {'ratio':>6}")
    rows = {}
    for name in MEDIAPIPE_SELECTION:
        a, b = statistics.median(ours[name]), statistics.median(theirs[name])
        rows[name] = {"vbg_ms": round(a, 2), "mediapipe_ms": round(b, 2), "ratio": round(a / b, 2)}
        print(f"{name:<28} {a:>12.2f} {b:>10.2f} {a / b:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
