"""``vbg bench``: how fast each stage is on this machine, and whether the pipeline keeps up.

Three parts, printed as tables and written as JSON (``--json``):

1. **Models**: milliseconds per mask (median, p95) and masks per second for each model at its
   input size on each device asked for. Models whose weights are not cached run with untrained
   weights (speed does not depend on the weights' values) and are marked so.
2. **Compositor**: milliseconds per frame at 1280x720 and 1920x1080 for each background kind,
   with a straightforward float32 NumPy blend measured beside it in the same run.
3. **Pipeline**: a real clip played as a paced 30 fps 1280x720 camera through the normal source
   interface for N seconds per model, into a sink that only records timings: output and mask
   rates, capture-to-write latency and mask age (p50, p95), process CPU %, peak RSS, and the
   frames each queue dropped. ``--still`` adds a still picture as the camera, to show the work
   saved when nothing moves.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vbg.compositing.backgrounds import (
    Background,
    BlurBackground,
    ColorBackground,
    ImageBackground,
    PassThrough,
    VideoBackground,
)
from vbg.compositing.compositor import Compositor
from vbg.errors import SourceError
from vbg.images import cover
from vbg.outputs.sinks import Sink
from vbg.pipeline import Pipeline
from vbg.segmentation.models import MODELS, is_cached
from vbg.segmentation.segmenter import (
    Segmenter,
    TorchvisionSegmenter,
    choose_device,
    half_precision,
    load_segmenter,
)
from vbg.sources.capture import ImageSource, VideoFileSource
from vbg.stats import Stats

Frame = np.ndarray  # H x W x 3 uint8, BGR
SIZES = ((1280, 720), (1920, 1080))


def _times(fn: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - started))
    return times


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def bench_segmenter(name: str, device: str, precision: str = "auto") -> tuple[Segmenter, bool]:
    """The model ready to time, and whether it has its real weights here."""
    info = MODELS[name]
    if is_cached(info) or info.family == "mediapipe":
        return load_segmenter(name, weights=None, device=device, precision=precision), True
    assert info.builder is not None
    model = info.builder(weights=None, weights_backbone=None, num_classes=21)
    torch_device = choose_device(device)
    segmenter = TorchvisionSegmenter(
        model, device=torch_device, inference_size=info.inference_size, name=name,
        half=half_precision(precision, torch_device),
    )  # fmt: skip
    return segmenter, False


def bench_models(
    frame: Frame,
    models: Sequence[str],
    devices: Sequence[str],
    repeat: int,
    precision: str = "auto",
) -> list[dict[str, Any]]:
    rows = []
    for device in devices:
        for name in models:
            segmenter, real = bench_segmenter(name, device, precision)
            times = _times(lambda s=segmenter: s.segment(frame), repeat)  # type: ignore[misc]
            median = statistics.median(times)
            width, height = segmenter.input_size(frame.shape[1], frame.shape[0])
            rows.append({
                "model": name,
                "device": segmenter.device.type,
                "dtype": str(segmenter.dtype).removeprefix("torch."),
                "input": f"{width}x{height}",
                "weights": "real" if real else "untrained",
                "ms_median": round(median, 2),
                "ms_p95": round(_p95(times), 2),
                "masks_per_s": round(1000.0 / median, 1),
            })  # fmt: skip
    return rows


def _backgrounds(data: Path) -> dict[str, Callable[[], Background]]:
    return {
        "image": lambda: ImageBackground(data / "backgrounds" / "mate_Dune.jpg"),
        "video": lambda: VideoBackground(data / "videos" / "volcomix_thoughtful-35590.mp4"),
        "color": lambda: ColorBackground((64, 177, 0)),
        "blur": BlurBackground,
        "none": PassThrough,
    }


def numpy_blend(frame: Frame, mask: np.ndarray, background: Frame) -> Frame:
    """The straightforward blend the compositor is measured against: float32 NumPy."""
    alpha = mask[..., None]
    return (
        frame.astype(np.float32) * alpha + background.astype(np.float32) * (1.0 - alpha)
    ).astype(np.uint8)


def _composite_ms(compositor: Compositor, frame: Frame, mask: np.ndarray, repeat: int) -> float:
    clock = [0.0]

    def step() -> None:
        clock[0] += 1 / 30  # video backgrounds move on, as they do live
        compositor.composite(frame, mask, clock[0])

    return statistics.median(_times(step, repeat))


def _numpy_ms(frame: Frame, mask: np.ndarray, background: Frame, repeat: int) -> float:
    return statistics.median(_times(lambda: numpy_blend(frame, mask, background), repeat))


def bench_compositor(source: Frame, data: Path, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for width, height in SIZES:
        frame = cover(source, width, height)
        ellipse = np.zeros((height, width), np.float32)
        cv2.ellipse(
            ellipse, (width // 2, height), (width // 4, height * 3 // 4), 0, 0, 360, 1.0, -1
        )
        mask = cv2.GaussianBlur(ellipse, (0, 0), 4)
        for kind, make in _backgrounds(data).items():
            background = make()
            ours = _composite_ms(Compositor(background), frame, mask, repeat)
            row: dict[str, Any] = {
                "size": f"{width}x{height}", "background": kind, "ms_median": round(ours, 2)
            }  # fmt: skip
            rendered = background.render(frame, 0.0, mask)
            if rendered is not None:
                theirs = _numpy_ms(frame, mask, rendered, repeat)
                row["numpy_float32_ms"] = round(theirs, 2)
                row["speedup"] = round(theirs / ours, 1)
            rows.append(row)
            background.close()
    return rows


class TimingSink(Sink):
    """A sink that only takes the frames (the pipeline records when each one arrives)."""

    name = "sink"

    def __init__(self) -> None:
        self.frames = 0

    def write(self, frame: Frame) -> None:
        self.frames += 1


def bench_pipeline(
    name: str,
    clip: Path,
    seconds: float,
    *,
    still: Path | None = None,
    device: str = "cpu",
    skip_still: bool = True,
    precision: str = "auto",
) -> dict[str, Any]:
    """Run the live pipeline for ``seconds`` on a paced 30 fps 1280x720 camera made of ``clip``
    (or of the still picture ``still``); return its figures. ``skip_still`` False segments
    every frame, even one that barely changed."""
    segmenter, real = bench_segmenter(name, device, precision)
    source = (
        ImageSource(still, width=1280, height=720, fps=30.0)
        if still
        else VideoFileSource(clip, width=1280, height=720, fps=30.0, loop=True)
    )
    stats = Stats()
    pipeline = Pipeline(
        source,
        segmenter,
        Compositor(BlurBackground()),
        [TimingSink()],
        max_frames=max(1, round(30 * seconds)),
        stats=stats,
        skip_still=skip_still,
    )
    pipeline.start()
    try:
        pipeline.wait(seconds + 60.0)
    finally:
        pipeline.stop()
        source.close()
    figures = stats.to_dict()
    return {
        "model": name,
        "device": segmenter.device.type,
        "weights": "real" if real else "untrained",
        "scene": "still" if still else "moving",
        "fps_out": figures["fps_out"],
        "mask_fps": figures["mask_fps"],
        "latency_ms": figures["timings"].get("latency_sink", {}),
        "mask_age_ms": figures["timings"].get("mask_age", {}),
        "cpu_percent": figures["cpu_percent"],
        "peak_rss_mb": figures["peak_rss_mb"],
        "dropped": {**figures["dropped"], "frames_skipped": figures.get("frames_skipped", 0)},
        "masks_skipped": figures.get("masks_skipped", 0),
    }


def run_bench(
    data: Path,
    *,
    models: Sequence[str],
    devices: Sequence[str] = ("cpu",),
    seconds: float = 10.0,
    repeat: int = 20,
    pipeline_models: Sequence[str] | None = None,
    still: bool = False,
    skip_still: bool = True,
    precision: str = "auto",
) -> dict[str, Any]:
    """All three parts; ``data`` is the shared data folder (videos/, backgrounds/, images/).
    The pipeline part runs its models on the first of ``devices``."""
    clip = data / "videos" / "volcomix_doctor-26732.mp4"
    capture = cv2.VideoCapture(str(clip))
    ok, first = capture.read()
    capture.release()
    if not ok:
        raise SourceError(f"The benchmark clip '{clip}' cannot be read; pass --data.")
    frame = cover(first, 1280, 720)
    result: dict[str, Any] = {
        "machine": {
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },  # fmt: skip
        "models": bench_models(frame, models, devices, repeat, precision),
        "compositor": bench_compositor(first, data, repeat * 5),
        "pipeline": [],
    }
    for name in pipeline_models if pipeline_models is not None else models:
        for picture in [None, data / "images" / "volcomix_doctor-5871743_640.jpg"][: 1 + still]:
            result["pipeline"].append(
                bench_pipeline(
                    name,
                    clip,
                    seconds,
                    still=picture,
                    device=devices[0],
                    skip_still=skip_still,
                    precision=precision,
                )  # fmt: skip
            )
    return result


def format_bench(result: dict[str, Any]) -> str:
    """The tables ``vbg bench`` prints."""
    lines = ["Models (one 1280x720 frame, mask at frame size):"]
    lines.append(f"  {'model':<30} {'device':<6} {'dtype':<7} {'input':>9} {'median ms':>10} "
                 f"{'p95 ms':>8} {'masks/s':>8}  weights")  # fmt: skip
    for row in result["models"]:
        lines.append(
            f"  {row['model']:<30} {row['device']:<6} {row['dtype']:<7} {row['input']:>9} "
            f"{row['ms_median']:>10.2f} "
            f"{row['ms_p95']:>8.2f} {row['masks_per_s']:>8.1f}  {row['weights']}"
        )
    lines.append("Compositor (ms per frame; float32 NumPy blend beside it):")
    for row in result["compositor"]:
        extra = (
            f"   numpy {row['numpy_float32_ms']:.2f} ms, x{row['speedup']}"
            if "speedup" in row
            else ""
        )
        lines.append(
            f"  {row['size']:>9} {row['background']:<6} {row['ms_median']:>7.2f} ms{extra}"
        )
    lines.append("Pipeline (paced 30 fps 1280x720 camera, blur background):")
    for row in result["pipeline"]:
        latency, age = row["latency_ms"], row["mask_age_ms"]
        lines.append(
            f"  {row['model']:<30} {row['device']:<4} {row['scene']:<6} out "
            f"{row['fps_out']:5.1f} fps  masks {row['mask_fps']:5.1f}/s  latency p50 "
            f"{latency.get('p50_ms', 0):6.1f} p95 "
            f"{latency.get('p95_ms', 0):6.1f} ms  mask age p50 {age.get('p50_ms', 0):7.1f} p95 "
            f"{age.get('p95_ms', 0):7.1f} ms  CPU {row['cpu_percent']:5.1f}%  RSS "
            f"{row['peak_rss_mb']:.0f} MiB  still frames not segmented {row['masks_skipped']}  "
            f"dropped {row['dropped']}"
        )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")
