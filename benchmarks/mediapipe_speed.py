"""vbg's MediaPipe models in torch vs MediaPipe's own runtime, side by side in one run.

MediaPipe (``mediapipe==0.10.14``) pulls opencv-contrib-python, so it lives in a virtual
environment of its own; pass that environment's python:

    python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install mediapipe==0.10.14
    python benchmarks/mediapipe_speed.py --mediapipe-python /tmp/mpenv/bin/python

Both sides segment the same frames of a real webcam-like clip (1280x720) one at a time, mask
returned at frame size, and report the median milliseconds per frame after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vbg.backgrounds import cover
from vbg.segmenter import load_segmenter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "videos" / "volcomix_doctor-26732.mp4"

# Runs in the MediaPipe environment: times SelfieSegmentation.process on the same frames.
MEDIAPIPE_SIDE = r"""
import json, statistics, sys, time
import cv2, numpy as np, mediapipe as mp
frames = np.load(sys.argv[1])
result = {}
for selection in (0, 1):
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as seg:
        times = []
        for i, frame in enumerate(frames):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            started = time.perf_counter()
            seg.process(rgb).segmentation_mask
            if i >= 5:
                times.append(1000 * (time.perf_counter() - started))
    result[selection] = statistics.median(times)
print(json.dumps(result))
"""


def read_frames(count: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(CLIP))
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
        if i >= 5:
            times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mediapipe-python", required=True, help="python of the mediapipe venv")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    frames = read_frames(args.frames)
    path = Path("/tmp/vbg-bench-frames.npy")
    np.save(path, frames)
    names = ("mediapipe_selfie", "mediapipe_selfie_landscape")
    ours: dict[str, list[float]] = {name: [] for name in names}
    theirs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):  # alternate the two sides, so load on the machine hits both
        side = subprocess.run(
            [args.mediapipe_python, "-c", MEDIAPIPE_SIDE, str(path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        answer = json.loads(side.stdout.strip().splitlines()[-1])
        for selection, name in enumerate(names):
            theirs[name].append(answer[str(selection)])
            ours[name].append(time_vbg(name, frames))
    path.unlink()
    print(
        f"{len(frames)} frames 1280x720 from {CLIP.name}; median ms per frame (mask at frame "
        f"size), median of {args.rounds} alternating rounds"
    )
    print(f"{'model':<28} {'vbg (torch)':>12} {'MediaPipe':>10} {'ratio':>6}")
    rows = {}
    for name in names:
        a, b = statistics.median(ours[name]), statistics.median(theirs[name])
        rows[name] = {"vbg_ms": round(a, 2), "mediapipe_ms": round(b, 2), "ratio": round(a / b, 2)}
        print(f"{name:<28} {a:>12.2f} {b:>10.2f} {a / b:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
