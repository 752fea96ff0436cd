"""The paced 720p pipeline on a GPU, with the variants that look for why the MediaPipe models make
fewer masks/s there than the ResNet and MobileNet models (issue 14, target 7).

Each row: ``vbg bench``'s pipeline part (the source as a paced 30 fps 1280x720 camera, blurred
room, still-scene skip off) for 8 s on ``--device``, then the variants on
mediapipe_selfie_landscape: the model thread at normal priority, OpenCV's pool at 16 threads
(the default on a 16-core machine, before a live run capped it), the tracking crop off, sync
off. Models without their weights run untrained (the same speed)::

    python benchmarks/gpu_pipeline.py --source ../shared/data/videos/volcomix_doctor-26732.mp4 \\
        --json gpu_pipeline.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2

import vbg.commands.bench as bench
import vbg.commands.frame_path as frame_path
import vbg.pipeline as pipeline

MODELS = (
    "mediapipe_selfie_landscape",
    "mediapipe_selfie",
    "fcn_resnet50",
    "lraspp_mobilenet_v3_large",
)
PROBED = "mediapipe_selfie_landscape"


@contextmanager
def _niceness(value: int) -> Iterator[None]:
    saved, pipeline.INFERENCE_NICENESS = pipeline.INFERENCE_NICENESS, value
    try:
        yield
    finally:
        pipeline.INFERENCE_NICENESS = saved


@contextmanager
def _opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's pool at ``count`` threads: a live run's cap raised to it."""
    saved_cap, saved = frame_path.OPENCV_THREADS, cv2.getNumThreads()
    frame_path.OPENCV_THREADS = count
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        frame_path.OPENCV_THREADS = saved_cap
        cv2.setNumThreads(saved)


@contextmanager
def _crop_off() -> Iterator[None]:
    saved, bench.wants_crop = bench.wants_crop, lambda name, mode: False
    try:
        yield
    finally:
        bench.wants_crop = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="video file, played as the camera")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []

    def measure(label: str, model: str, sync: str = "auto") -> None:
        row = bench.bench_pipeline(
            model, args.source, args.seconds, device=args.device, skip_still=False, sync=sync
        )
        row["variant"] = label
        rows.append(row)
        print(
            f"{label:24s} {model:28s} fps {row['fps_out']:5.1f}  masks/s {row['mask_fps']:5.1f}  "
            f"own mask {row['frames_own_mask']}/{row['frames_out']}  "
            f"latency p95 {row['latency_ms'].get('p95_ms')} ms  CPU {row['cpu_percent']} %",
            flush=True,
        )

    for model in MODELS:
        measure("as a live run", model)
    variants = {
        "normal priority": _niceness(0),
        "OpenCV 16 threads": _opencv_threads(16),
        "crop off": _crop_off(),
    }
    for label, variant in variants.items():
        with variant:
            measure(label, PROBED)
    measure("sync off", PROBED, sync="off")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
