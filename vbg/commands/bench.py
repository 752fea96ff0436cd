"""``vbg bench``: how fast each stage is on this machine, and whether the pipeline keeps up.

Its inputs are arguments, as for any tool: the source (a camera index or a video file; camera 0
by default, as ``vbg run``), and optionally a still picture and a picture or video background.
Three parts, printed as tables and written as JSON (``--json``):

1. **Models**: milliseconds per mask (median, p95) and masks per second for each model at its
   input size on each device asked for, on the source's first frame at 1280x720. Models whose
   weights are not cached run with untrained weights (speed does not depend on the weights'
   values) and are marked so.
2. **Compositor**: milliseconds per frame at 1280x720 and 1920x1080 for colour, blur,
   pass-through and a picture background (the picture given, else the source's first frame), and
   a video background when one is given, with a straightforward float32 NumPy blend measured
   beside each in the same run.
3. **Pipeline**: the source played as a paced 30 fps 1280x720 camera (a video file loops)
   through the normal source interface for N seconds per model, into a sink that only counts
   frames: frames out and masks made, output and mask rates, capture-to-write latency and mask
   age (p50, p95), process CPU %, peak RSS, and the frames each queue dropped; with sync as
   ``vbg run``'s default (auto: each frame held for its own mask while the model keeps up), and
   how many frames were shown with their own mask. With a still picture, the same again with
   the picture as the camera, to show the work saved when nothing moves.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vbg.commands.frame_path import live_segmenter, wants_crop
from vbg.compositing.backgrounds import (
    Background,
    BlurBackground,
    ColorBackground,
    ImageBackground,
    PassThrough,
    VideoBackground,
    open_background,
)
from vbg.compositing.compositor import Compositor
from vbg.errors import BackgroundError, SourceError, VbgError
from vbg.images import cover, to_matte
from vbg.outputs.sinks import Sink
from vbg.pipeline import Pipeline
from vbg.processor import FrameProcessor
from vbg.segmentation.models import MODELS, is_cached, save_speeds
from vbg.segmentation.segmenter import (
    Segmenter,
    TorchvisionSegmenter,
    choose_device,
    half_precision,
    load_segmenter,
)
from vbg.sources.capture import ImageSource, Source, open_source
from vbg.stats import Stats

Frame = np.ndarray  # H x W x 3 uint8, BGR
SIZES = ((1280, 720), (1920, 1080))
CAMERA = (1280, 720, 30.0)  # width, height, fps of the camera the pipeline part plays
PROFILE_FRAMES = 150  # frames the stage profile counts at most


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


def has_real_weights(name: str) -> bool:
    """Whether model ``name`` runs with its real weights here: a MediaPipe model (fetched on
    first use) or a torchvision model whose weights are cached; else the bench runs it untrained
    (the same speed)."""
    info = MODELS[name]
    return info.family == "mediapipe" or is_cached(info)


def untrained_model(name: str) -> torch.nn.Module:
    """Torchvision model ``name`` with untrained weights (21 labels, as its real ones)."""
    builder = MODELS[name].builder
    assert builder is not None  # only the torchvision models lack real weights here
    model: torch.nn.Module = builder(weights=None, weights_backbone=None, num_classes=21)
    return model


def bench_segmenter(name: str, device: str, precision: str = "auto") -> tuple[Segmenter, bool]:
    """The model ready to time, and whether it has its real weights here."""
    info = MODELS[name]
    if has_real_weights(name):
        return load_segmenter(name, weights=None, device=device, precision=precision), True
    model = untrained_model(name)
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
    """One row per model and device: ms per mask of ``frame`` (H x W x 3 uint8 BGR)."""
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


def _frame_background(frame: Frame) -> ImageBackground:
    """A picture background made of ``frame`` (H x W x 3 uint8 BGR)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source-frame.png"
        cv2.imwrite(str(path), frame)
        return ImageBackground(path)  # read now: the file may go


def background_kinds(
    frame: Frame, image: Path | None = None, video: Path | None = None
) -> dict[str, Callable[[], Background]]:
    """The background kinds to time, by name: a picture (``image``, else ``frame``, H x W x 3
    uint8 BGR), a video when ``video`` is given, colour, blur and pass-through."""
    kinds: dict[str, Callable[[], Background]] = {
        "image": (lambda: ImageBackground(image)) if image else (lambda: _frame_background(frame))
    }
    if video:
        kinds["video"] = lambda: VideoBackground(video)
    kinds.update(color=lambda: ColorBackground((64, 177, 0)), blur=BlurBackground, none=PassThrough)
    return kinds


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


def bench_compositor(
    source: Frame, kinds: dict[str, Callable[[], Background]], repeat: int
) -> list[dict[str, Any]]:
    """One row per size and background kind: ms per frame made of ``source`` (H x W x 3 uint8
    BGR, covered to each size) with a soft ellipse as the mask, handed to the compositor as the
    frame path does (a Matte), and to the NumPy blend as float32."""
    rows = []
    for width, height in SIZES:
        frame = cover(source, width, height)
        ellipse = np.zeros((height, width), np.float32)
        cv2.ellipse(
            ellipse, (width // 2, height), (width // 4, height * 3 // 4), 0, 0, 360, 1.0, -1
        )
        mask = cv2.GaussianBlur(ellipse, (0, 0), 4)
        matte = to_matte(mask)
        for kind, make in kinds.items():
            background = make()
            try:
                ours = _composite_ms(Compositor(background), frame, matte, repeat)
                row: dict[str, Any] = {
                    "size": f"{width}x{height}", "background": kind, "ms_median": round(ours, 2)
                }  # fmt: skip
                rendered = background.render(frame, 0.0, matte)
                if rendered is not None:
                    theirs = _numpy_ms(frame, mask, rendered, repeat)
                    row["numpy_float32_ms"] = round(theirs, 2)
                    row["speedup"] = round(theirs / ours, 1)
            finally:
                background.close()
            rows.append(row)
    return rows


class TimingSink(Sink):
    """A sink that only counts the frames (the pipeline records when each one arrives)."""

    name = "sink"

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def _write(self, frame: Frame) -> None:
        self.frames += 1


def live_processor(
    segmenter: Segmenter, *, skip_still: bool = True, background: Background | None = None
) -> FrameProcessor:
    """The frame path the pipeline part times: ``segmenter`` with vbg's mask filters and
    ``background`` (default: the blurred room), and as in ``vbg run`` by default, the tracking
    crop where it pays, a still scene not segmented again (``skip_still``) and a model on the CPU
    leaving a core to the other stages."""
    crop = segmenter.name in MODELS and wants_crop(segmenter.name, "auto")
    return FrameProcessor(
        live_segmenter(segmenter, skip_still=skip_still, crop=crop),
        Compositor(background if background is not None else BlurBackground()),
    )


def run_pipeline(
    source: Source,
    segmenter: Segmenter,
    *,
    frames: int,
    skip_still: bool = True,
    sync: str = "auto",
    background: Background | None = None,
    record: Path | None = None,
) -> dict[str, Any]:
    """Run the live pipeline on ``source`` (:func:`live_processor`, into a :class:`TimingSink`)
    until ``frames`` frames are out or the source ends; return its Stats figures. ``skip_still``
    False segments every frame, even one that barely changed; ``sync`` as ``vbg run --sync``;
    ``background`` as :func:`live_processor`; ``record``: also an H.264 recording there, as
    ``vbg run --record`` writes it. Does not close ``source``."""
    from vbg.outputs.sinks import RecordingSink

    stats = Stats()
    processor = live_processor(segmenter, skip_still=skip_still, background=background)
    sinks: list[Sink] = [TimingSink()]
    if record is not None:
        sinks.append(RecordingSink(record, source.width, source.height, source.fps or 30.0))
    pipeline = Pipeline(source, processor, sinks, max_frames=frames, stats=stats, sync=sync)
    pipeline.start()
    try:
        pipeline.wait(frames / source.fps + 60.0)
    finally:
        pipeline.stop()
    return stats.to_dict()


def bench_pipeline(
    name: str,
    source: str,
    seconds: float,
    *,
    device: str = "cpu",
    skip_still: bool = True,
    precision: str = "auto",
    sync: str = "auto",
    background: str = "blur",
    record: bool = False,
    size: tuple[int, int] = CAMERA[:2],
) -> dict[str, Any]:
    """Run the live pipeline for ``seconds`` on ``source`` (a camera index, or a video or picture
    file) played as a paced 30 fps camera of ``size`` (width, height), a video looping; return
    its figures. ``sync``: as ``vbg run --sync`` (auto, its default); ``background``: a
    ``--background`` spec; ``record``: with an H.264 recording as ``vbg run --record``."""
    segmenter, real = bench_segmenter(name, device, precision)
    width, height = size
    fps = CAMERA[2]
    with (
        open_source(source, width=width, height=height, fps=fps, loop=True) as camera,
        tempfile.TemporaryDirectory() as folder,
    ):
        scene = "still" if isinstance(camera, ImageSource) else "moving"
        shown = open_background(background)
        try:
            figures = run_pipeline(
                camera,
                segmenter,
                frames=max(1, round(fps * seconds)),
                skip_still=skip_still,
                sync=sync,
                background=shown,
                record=Path(folder) / "recording.mkv" if record else None,
            )
        finally:
            shown.close()
        description = camera.description
    return {
        "model": name,
        "device": segmenter.device.type,
        "weights": "real" if real else "untrained",
        "source": description,
        "scene": scene,
        "size": f"{width}x{height}",
        "background": background,
        "record": record,
        "sync": sync,
        "frames_out": figures["frames_out"],
        "frames_own_mask": figures.get("frames_own_mask", 0),
        "frames_held": figures.get("frames_held", 0),
        "masks": figures["masks"],
        "masks_skipped": figures.get("masks_skipped", 0),
        "seconds": figures["duration_s"],
        "fps_out": figures["fps_out"],
        "mask_fps": figures["mask_fps"],
        "latency_ms": figures["timings"].get("latency_sink", {}),
        "mask_age_ms": figures["timings"].get("mask_age", {}),
        "held_ms": figures["timings"].get("sync_wait", {}),
        "cpu_percent": figures["cpu_percent"],
        "peak_rss_mb": figures["peak_rss_mb"],
        "dropped": {**figures["dropped"], "frames_skipped": figures.get("frames_skipped", 0)},
    }


def first_frame(source: str) -> Frame:
    """The first frame (H x W x 3 uint8 BGR, at the source's own size) of ``source``: a camera
    index or a video or picture file. Raises :class:`SourceError` saying what to do."""
    with open_source(source, realtime=False) as opened:
        frame = opened.read()
    if frame is None:
        raise SourceError(f"Source '{source}' gives no frame. Pick another with --source.")
    return frame


def _check_file(path: Path | None, error: type[VbgError], what: str, flag: str) -> None:
    if path is not None and not path.is_file():
        raise error(f"{what} '{path}' does not exist. Check {flag}.")


def run_bench(
    *,
    models: Sequence[str],
    source: str = "0",
    still: Path | None = None,
    background_image: Path | None = None,
    background_video: Path | None = None,
    devices: Sequence[str] = ("cpu",),
    seconds: float = 10.0,
    repeat: int = 20,
    pipeline_models: Sequence[str] | None = None,
    skip_still: bool = True,
    precision: str = "auto",
    sync: str = "auto",
    profile_frames: int | None = None,
    pipeline_backgrounds: Sequence[str] = ("blur",),
    pipeline_record: bool = False,
    sizes: Sequence[tuple[int, int]] = (CAMERA[:2],),
    startup_runs: int = 3,
) -> dict[str, Any]:
    """All three parts, and the per-stage profile (:func:`profile_stages`) of the first pipeline
    model on ``profile_frames`` frames (default: the pipeline's ``seconds`` at 30 fps, at most
    :data:`PROFILE_FRAMES`; 0: none). ``source``: a camera index or a video file; ``still``: a
    picture for a second pipeline run per model; ``background_image`` / ``background_video``:
    what the compositor part times as those backgrounds (a picture made of the source's first
    frame, and no video, without them). The pipeline part runs its models on the first of
    ``devices``, with ``sync`` as ``vbg run --sync``, a camera of each of ``sizes`` (width,
    height), once for each of ``pipeline_backgrounds`` (``--background`` specs), and with
    ``pipeline_record`` once more with the first of them and a recording; with
    ``startup_runs``, the start-up of ``vbg run`` with each pipeline model
    (:func:`bench_startup`).
    Every input is opened before anything is timed, so a bad one fails at once."""
    _check_file(still, SourceError, "Still picture", "--still")
    _check_file(background_image, BackgroundError, "Background picture", "--background-image")
    _check_file(background_video, BackgroundError, "Background video", "--background-video")
    first = first_frame(source)
    if still is not None:
        ImageSource(still, realtime=False).close()  # raises SourceError if it cannot be read
    kinds = background_kinds(first, background_image, background_video)
    for make in kinds.values():
        make().close()  # raises BackgroundError if it cannot be read
    for spec in pipeline_backgrounds:
        open_background(spec).close()
    variants = [(spec, False) for spec in pipeline_backgrounds]
    if pipeline_record:
        variants.append((pipeline_backgrounds[0], True))
    result: dict[str, Any] = {
        "machine": {
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },  # fmt: skip
        "inputs": {
            "source": source,
            "still": str(still) if still else None,
            "background_image": str(background_image) if background_image else None,
            "background_video": str(background_video) if background_video else None,
        },
        "models": bench_models(cover(first, *CAMERA[:2]), models, devices, repeat, precision),
        "compositor": bench_compositor(first, kinds, repeat * 5),
        "pipeline": [],
    }
    save_speeds(result["models"])  # for 'vbg models'
    scenes = [source] + ([str(still)] if still is not None else [])
    for name in pipeline_models if pipeline_models is not None else models:
        for scene in scenes:
            for size in sizes:
                for spec, record in variants:
                    result["pipeline"].append(
                        bench_pipeline(
                            name,
                            scene,
                            seconds,
                            device=devices[0],
                            skip_still=skip_still,
                            precision=precision,
                            sync=sync,
                            background=spec,
                            record=record,
                            size=size,
                        )
                    )
    if startup_runs > 0:
        result["startup"] = [
            bench_startup(name, source, device=devices[0], runs=startup_runs)
            for name in (pipeline_models if pipeline_models is not None else models)
        ]
    if profile_frames is None:
        profile_frames = min(PROFILE_FRAMES, max(1, round(CAMERA[2] * seconds)))
    if profile_frames > 0:
        first_model = (list(pipeline_models) if pipeline_models is not None else list(models))[:1]
        if first_model:
            result["profile"] = bench_profile(
                first_model[0], source, profile_frames, device=devices[0]
            )
    return result


def bench_startup(name: str, source: str, *, device: str = "cpu", runs: int = 3) -> dict[str, Any]:
    """Launch to the first frame out of ``vbg run`` with model ``name`` (the run's own
    ``startup_s``, and its milestones), the median of ``runs`` runs of one frame, each a fresh
    process: ``source`` as the camera, an H.264 recording as the only output. A torchvision
    model whose weights are not cached runs with untrained ones (the same speed)."""
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        argv = [
            sys.executable, "-m", "vbg", "--source", source, "--model", name, "--device", device,
            "--no-preview", "--no-virtual-cam", "--record", str(Path(folder) / "out.mkv"),
            "--overwrite", "--max-frames", "1", "--stats", str(Path(folder) / "stats.json"), "-q",
        ]  # fmt: skip
        real = has_real_weights(name)
        if not real:
            weights = Path(folder) / f"{name}-untrained.pth"
            torch.save(untrained_model(name).state_dict(), weights)
            argv += ["--weights", str(weights)]
        for _ in range(runs):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise VbgError(f"The start-up run of {name} failed: {done.stderr.strip()}")
            samples.append(json.loads((Path(folder) / "stats.json").read_text()))
    steps = samples[0]["startup"]
    return {
        "model": name,
        "device": device,
        "weights": "real" if real else "untrained",
        "runs": runs,
        "startup_s": round(statistics.median(s["startup_s"] for s in samples), 3),
        "steps_s": {
            step: round(statistics.median(s["startup"][step] for s in samples), 3)
            for step in steps
            if all(step in s["startup"] for s in samples)
        },
    }


def bench_profile(name: str, source: str, frames: int, *, device: str = "cpu") -> dict[str, Any]:
    """:func:`profile_stages` for model ``name`` on ``source`` played as a 1280x720 camera (a
    video looping, not paced), recording on, OpenCV and torch on one thread (set back after)."""
    segmenter, real = bench_segmenter(name, device)
    processor = live_processor(segmenter, skip_still=False)
    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    width, height, fps = CAMERA
    try:
        with (
            open_source(
                source, width=width, height=height, fps=fps, loop=True, realtime=False
            ) as camera,
            tempfile.TemporaryDirectory() as folder,
        ):
            profile = profile_stages(
                camera,
                processor,
                frames=frames,
                warmup=min(30, frames),
                record=Path(folder) / "profile.mkv",
            )
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    return {"model": name, "weights": "real" if real else "untrained", **profile}


def format_bench(result: dict[str, Any]) -> str:
    """The tables ``vbg bench`` prints; every figure in them is one of ``result``'s."""
    lines = ["Models (the source's first frame at 1280x720, mask at frame size):"]
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
    lines.append("Pipeline (the source as a paced 30 fps camera):")
    for row in result["pipeline"]:
        latency, age = row["latency_ms"], row["mask_age_ms"]
        shown = row["background"]
        shown = shown if len(shown) < 24 else "..." + shown[-21:]
        lines.append(
            f"  {row['model']:<30} {row['device']:<4} {row['scene']:<6} {row['size']:>9} "
            f"{shown:<24} {'record' if row['record'] else '':<6} {row['frames_out']:>5} "
            f"frames in {row['seconds']:.2f} s, out {row['fps_out']:5.1f} fps  "
            f"{row['masks']:>5} masks {row['mask_fps']:5.1f}/s  latency p50 "
            f"{latency.get('p50_ms', 0):6.1f} p95 "
            f"{latency.get('p95_ms', 0):6.1f} ms  mask age p50 {age.get('p50_ms', 0):7.1f} p95 "
            f"{age.get('p95_ms', 0):7.1f} ms  sync {row['sync']}: own mask "
            f"{row['frames_own_mask']}/{row['frames_out']}  CPU {row['cpu_percent']:5.1f}%  RSS "
            f"{row['peak_rss_mb']:.0f} MiB  still frames not segmented {row['masks_skipped']}  "
            f"dropped {row['dropped']}"
        )
    if "profile" in result:
        lines.append(format_profile(result["profile"]).replace("Stage profile (", "Stage profile "
                     f"of {result['profile']['model']} ("))  # fmt: skip
    if result.get("startup"):
        lines.append("Start-up (vbg run: launch to the first frame out, median of its runs):")
        for row in result["startup"]:
            steps = "  ".join(f"{step} {at:.2f}" for step, at in row["steps_s"].items())
            lines.append(
                f"  {row['model']:<30} {row['device']:<4} {row['startup_s']:5.2f} s  ({steps})"
            )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


# -- the per-stage profile ---------------------------------------------------------------------

# What each stage of the frame path is, in the order a frame meets them; "model" is the model
# alone, and "total_without_model" sums the others (a frame's whole cost but the model's).
STAGES = (
    "capture_decode",  # the source's read: decode and scale to 1280x720
    "model",  # the segmenter's network (preprocessing included)
    "crop_gate",  # the tracking crop and the still-scene gate around it
    "smoothing",  # TemporalSmoother with its motion-compensating flow (the keyframe half)
    "flow",  # FlowTracker: the mask moved along the optical flow
    "upsampling",  # MaskRefiner: the guided filter, the steeper room side, the full-size Matte
    "background",  # the background's frame (the blurred room)
    "blend",  # the composite of frame, mask and background
    "virtual_cam",  # VirtualCameraSink.write (BGR as it is; the device send excluded)
    "record",  # RecordingSink: H.264 (x264 ultrafast, its threads counted)
    "other",  # the rest of FrameProcessor.process (the person watch, the calls between)
)


PROCESS_STAGES = STAGES[1:8]  # those inside FrameProcessor.process


class _Clock:
    """CPU seconds per stage for the current frame, from thread CPU time (the stages run on
    this thread), or process CPU time for a stage with threads of its own (the encoder)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, owner: object, method: str, stage: str, *, process: bool = False) -> None:
        """Time ``owner.method`` as ``stage`` from now on (an attribute set on the object)."""
        inner = getattr(owner, method)
        now = time.process_time if process else time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = now()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[stage] = self.spent.get(stage, 0.0) + now() - started

        setattr(owner, method, timed)


class _Discard:
    """pyvirtualcam.Camera's interface, sending nowhere (so only vbg's conversion is timed)."""

    def __init__(
        self, width: int, height: int, fps: float, *, fmt: Any = None, device: Any = None
    ) -> None:
        self.device = device or "none"
        self.shape = (height, width, 3)

    def send(self, frame: Frame) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"unexpected frame {frame.shape} {frame.dtype}")

    def close(self) -> None:
        pass


def _innermost(segmenter: Segmenter) -> Segmenter:
    while isinstance(getattr(segmenter, "inner", None), Segmenter):
        segmenter = segmenter.inner  # type: ignore[attr-defined]
    return segmenter


def profile_stages(
    source: Source,
    processor: FrameProcessor,
    *,
    frames: int = 300,
    warmup: int = 30,
    record: Path | None = None,
) -> dict[str, Any]:
    """CPU milliseconds per frame for each stage of the frame path (:data:`STAGES`), on this
    thread, one frame after another as :meth:`FrameProcessor.process` does (every frame gets its
    own mask), with ``source`` read (a video loops) and each frame written to a virtual camera
    that sends nowhere and, with ``record``, to an H.264 recording there (replaced). The first
    ``warmup`` frames are not counted. Returns the median and p95 of each stage and of the total
    without the model, and the frames counted; the objects are timed by wrapping their methods
    in place (``processor`` is left timed)."""
    from vbg.outputs.sinks import RecordingSink, VirtualCameraSink

    clock = _Clock()
    first = source.read()
    if first is None:
        raise SourceError(f"Source '{source.description}' gives no frame.")
    height, width = first.shape[:2]
    camera = VirtualCameraSink(width, height, source.fps or 30.0, camera_factory=_Discard)
    sinks: list[Sink] = [camera]
    if record is not None:
        sinks.append(RecordingSink(record, width, height, source.fps or 30.0, overwrite=True))
    segmenter, path, compositor = processor.segmenter, processor._path, processor.compositor
    clock.wrap(processor, "process", "other")
    clock.wrap(source, "read", "capture_decode")
    clock.wrap(segmenter, "predict", "crop_gate")
    clock.wrap(_innermost(segmenter), "predict", "model")
    clock.wrap(path, "keyframe", "smoothing")
    if path.tracker is not None:
        clock.wrap(path.tracker, "track", "flow")
    clock.wrap(path.refiner, "refine", "upsampling")
    clock.wrap(compositor, "_render", "background")
    clock.wrap(compositor, "composite", "blend")
    clock.wrap(camera, "write", "virtual_cam")
    if record is not None:
        clock.wrap(sinks[1], "write", "record", process=True)
    nested = {"crop_gate": "model", "blend": "background"}
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    samples["total_without_model"] = []
    frame: Frame | None = first
    try:
        for n in range(warmup + frames):
            if n:
                frame = source.read()
            if frame is None:
                break
            rendered = processor.process(frame, n / (source.fps or 30.0))
            for sink in sinks:
                sink.write(rendered.frame)
            spent = clock.spent
            for outer, inner in nested.items():  # the outer stage's own share
                spent[outer] = spent.get(outer, 0.0) - spent.get(inner, 0.0)
            spent["other"] -= sum(spent.get(stage, 0.0) for stage in PROCESS_STAGES)
            clock.spent = {}
            if n >= warmup:
                for stage in STAGES:
                    samples[stage].append(1000.0 * spent.get(stage, 0.0))
                samples["total_without_model"].append(
                    1000.0 * sum(v for k, v in spent.items() if k != "model")
                )
    finally:
        for sink in sinks:
            sink.close()
    counted = len(samples["total_without_model"])
    return {
        "size": f"{width}x{height}",
        "frames": counted,
        "record": record is not None,
        "stages_ms": {
            stage: {
                "median": round(statistics.median(values), 3),
                "p95": round(_p95(values), 3),
            }
            for stage, values in samples.items()
            if values
        },
    }


def format_profile(profile: dict[str, Any]) -> str:
    """The table of :func:`profile_stages`' figures."""
    lines = [
        f"Stage profile ({profile['size']}, {profile['frames']} frames, CPU ms per frame on "
        "one thread):",
        f"  {'stage':<22} {'median':>8} {'p95':>8}",
    ]
    for stage, row in profile["stages_ms"].items():
        lines.append(f"  {stage:<22} {row['median']:>8.2f} {row['p95']:>8.2f}")
    return "\n".join(lines)
