"""Milliseconds per mask for each vbg model, and per composited frame, on this machine.

Speed does not depend on the weights' values, so the torchvision models run with untrained
weights (no download needed); the MediaPipe models run from their real files (vbg models fetch).
Frames come from a real webcam-like clip in ../shared/data/videos, scaled to 1280x720. Usage:

    python benchmarks/models.py [--repeat 15] [--models fcn_resnet50 ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vbg.backgrounds import BlurBackground, ColorBackground, ImageBackground, cover
from vbg.compositor import Compositor
from vbg.models import MODELS
from vbg.segmenter import Segmenter, TorchvisionSegmenter, load_segmenter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(DATA / "videos" / "volcomix_doctor-26732.mp4"))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read the benchmark clip under {DATA / 'videos'}")
    return cover(frame, 1280, 720)


def _time(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - started))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    frame = _frame()
    results: dict[str, dict[str, float]] = {}
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} threads {torch.get_num_threads()}, frame 1280x720"
    )
    for name in args.models:
        info = MODELS[name]
        segmenter: Segmenter
        if info.family == "mediapipe":  # the real file: vbg models fetch NAME
            segmenter = load_segmenter(name, weights=None, device="cpu")
        else:
            kwargs = {"weights": None, "weights_backbone": None, "num_classes": 21}
            assert info.builder is not None
            segmenter = TorchvisionSegmenter(
                info.builder(**kwargs), device=torch.device("cpu"),
                inference_size=info.inference_size,
            )  # fmt: skip
        times = _time(lambda s=segmenter: s.segment(frame), args.repeat)
        median = statistics.median(times)
        results[name] = {
            "input": info.input_label,
            "ms_median": round(median, 1),
            "ms_p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 1),
            "masks_per_s": round(1000.0 / median, 2),
        }
        print(
            f"{name:<30} {info.input_label:>18}  {median:7.1f} ms/mask  "
            f"{1000.0 / median:5.1f} masks/s"
        )

    mask = np.zeros(frame.shape[:2], np.float32)
    mask[100:700, 400:900] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 5)
    image = ImageBackground(DATA / "backgrounds" / "mate_Dune.jpg")
    for label, background in (
        ("image", image),
        ("color", ColorBackground((0, 177, 64))),
        ("blur", BlurBackground()),
    ):
        compositor = Compositor(background)
        times = _time(lambda c=compositor: c.composite(frame, mask, 0.0), args.repeat * 4)
        results[f"composite_{label}"] = {"ms_median": round(statistics.median(times), 2)}
        print(f"compositor, {label:<6} background, 1280x720: {statistics.median(times):6.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
