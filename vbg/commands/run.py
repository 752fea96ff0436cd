"""``vbg run``: open the source, model, background and outputs, run the Pipeline, handle keys.

Everything opened here is held in one ExitStack, so a recording is finalised however the run ends
(quit key, Ctrl-C, SIGTERM, end of a file, or an error in a stage).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vbg.compositing.backgrounds import (
    COLORS,
    Background,
    BlurBackground,
    ColorBackground,
    FolderBackground,
    PassThrough,
    open_background,
    parse_color,
)
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.errors import SinkError
from vbg.outputs.preview import PreviewWindow, draw_overlay
from vbg.outputs.sinks import CRASH_SAFE_SUFFIXES, RecordingSink, Sink, VirtualCameraSink
from vbg.pipeline import Pipeline
from vbg.segmentation.segmenter import Segmenter, load_segmenter
from vbg.sources.capture import open_source
from vbg.stats import Stats

Frame = np.ndarray  # H x W x 3 uint8, BGR
NOTICE_SECONDS = 3.0


def say(message: str) -> None:
    """One line for the user on stderr."""
    print(f"vbg: {message}", file=sys.stderr, flush=True)


def timestamped(folder: Path, prefix: str, suffix: str) -> Path:
    """A new file name in ``folder`` such as vbg-20260101-120000.mkv."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{prefix}-{stamp}{suffix}"
    n = 1
    while path.exists():
        path = folder / f"{prefix}-{stamp}-{n}{suffix}"
        n += 1
    return path


class _RateMeter:
    """Rate of a Stats counter over the last second or so, for the overlay."""

    def __init__(self, stats: Stats, name: str) -> None:
        self._stats, self._name = stats, name
        self._last_t, self._last_n, self.rate = time.monotonic(), 0, 0.0

    def update(self) -> float:
        now = time.monotonic()
        if now - self._last_t >= 1.0:
            n = self._stats.get(self._name)
            self.rate = (n - self._last_n) / (now - self._last_t)
            self._last_t, self._last_n = now, n
        return self.rate


class Controls:
    """What the preview's keys do to a running pipeline."""

    def __init__(
        self,
        compositor: Compositor,
        pipeline: Pipeline,
        config: RunConfig,
        *,
        size: tuple[int, int],
        fps: float,
        recording: RecordingSink | None,
    ) -> None:
        self.compositor = compositor
        self.pipeline = pipeline
        self.config = config
        self.size = size
        self.fps = fps
        self.recording = recording
        self.configured: Background = compositor.background
        self.show_help = False
        self._color_index = -1
        self._notice = ""
        self._notice_until = 0.0
        self._fps_out = _RateMeter(pipeline.stats, "frames_out")
        self._mask_fps = _RateMeter(pipeline.stats, "masks")

    def notify(self, text: str) -> None:
        """Show ``text`` in the overlay for a few seconds and log it."""
        self._notice, self._notice_until = text, time.monotonic() + NOTICE_SECONDS
        say(text)

    def show_messages(self) -> None:
        """Show and log what the pipeline has to say (a lost camera, a model moved to the CPU)."""
        while (text := self.pipeline.messages.get(timeout=0)) is not None:
            self.notify(text)

    def status_lines(self) -> list[str]:
        segmenter = self.pipeline.segmenter
        lines = [
            f"out {self._fps_out.update():4.1f} fps  mask {self._mask_fps.update():4.1f} fps  "
            f"{segmenter.name} on {segmenter.device.type}",
            f"background: {self.compositor.background.name}"
            + ("  mirror" if self.compositor.mirror else "")
            + ("  REC" if self.recording else "")
            + "  (? for keys)",
        ]
        if self._notice and time.monotonic() < self._notice_until:
            lines.append(self._notice)
        return lines

    def _step(self, delta: int) -> None:
        current = self.compositor.background
        if isinstance(self.configured, FolderBackground) and current is self.configured:
            skipped = self.configured.step(delta)
            if skipped:
                self.notify(skipped)
        self.compositor.set_background(self.configured)

    def handle(self, action: str, frame: Frame | None) -> bool:
        """Carry out ``action`` (see :data:`vbg.outputs.preview.KEYS`); False means quit.

        ``frame`` is the newest output frame without overlay, for snapshots.
        """
        if action == "quit":
            return False
        if action in ("next", "previous"):
            self._step(1 if action == "next" else -1)
        elif action == "blur":
            self.compositor.set_background(BlurBackground(weighted=self.config.blur_weighted))
        elif action == "color":
            self._color_index = (self._color_index + 1) % len(COLORS)
            self.compositor.set_background(ColorBackground(parse_color(COLORS[self._color_index])))
        elif action == "none":
            self.compositor.set_background(PassThrough())
        elif action == "mirror":
            self.compositor.mirror = not self.compositor.mirror
        elif action == "record":
            self.toggle_recording()
        elif action == "snapshot" and frame is not None:
            path = timestamped(self.config.record_dir, "vbg-snapshot", ".png")
            if cv2.imwrite(str(path), frame):
                self.notify(f"snapshot saved to {path}")
            else:
                self.notify(f"could not write snapshot {path}")
        elif action == "help":
            self.show_help = not self.show_help
        return True

    def toggle_recording(self) -> None:
        """Stop the running recording (finalising the file), or start a new one."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            self.pipeline.remove_sink(recording)
            self.notify(f"recording saved to {recording.path} ({recording.frames_written} frames)")
            return
        path = timestamped(self.config.record_dir, "vbg", ".mkv")  # plays even after a crash
        try:
            self.recording = RecordingSink(path, *self.size, self.fps)
        except SinkError as exc:
            self.notify(str(exc))
            return
        self.pipeline.add_sink(self.recording)
        self.notify(f"recording to {path}")


def _open_virtual_camera(
    size: tuple[int, int],
    fps: float,
    camera_factory: Callable[..., Any] | None,
    problems: list[str],
) -> VirtualCameraSink | None:
    try:
        return VirtualCameraSink(*size, fps, camera_factory=camera_factory)
    except SinkError as exc:
        problems.append(str(exc))
        return None


def run(config: RunConfig, *, camera_factory: Callable[..., Any] | None = None) -> Stats:
    """Run the live pipeline until quit, Ctrl-C, the end of a file source or ``max_frames``.

    ``camera_factory`` replaces ``pyvirtualcam.Camera`` (tests pass a stand-in).
    Returns the run's Stats (also written to ``config.stats`` when set).
    """
    stats = Stats()
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(
            open_source(
                config.source,
                width=config.width,
                height=config.height,
                fps=config.fps,
                loop=config.loop,
                realtime=True,
            )
        )
        background = open_background(config.background, blur_weighted=config.blur_weighted)
        stack.callback(background.close)

        def load(device: str, precision: str) -> Segmenter:
            return load_segmenter(
                config.model,
                weights=config.weights,
                device=device,
                inference_size=config.inference_size,
                precision=precision,
            )

        segmenter = load(config.device, config.precision)
        size, fps = (source.width, source.height), config.fps or source.fps
        label = f"{segmenter.name} on {segmenter.device.type}"
        stats.info.update(
            model=segmenter.name,
            device=segmenter.device.type,
            inference_size=segmenter.inference_size,
            width=size[0],
            height=size[1],
            fps=fps,
            source=source.description,
        )

        sinks: list[Sink] = []
        problems: list[str] = []  # outputs asked for that cannot be had
        vcam = None
        if config.virtual_cam:
            vcam = _open_virtual_camera(size, fps, camera_factory, problems)
            if vcam is not None:
                sinks.append(stack.enter_context(vcam))
        recording = None
        if config.record:
            recording = stack.enter_context(RecordingSink(config.record, *size, fps))
            sinks.append(recording)
            say(f"recording to {config.record}")
            if config.record.suffix.lower() not in CRASH_SAFE_SUFFIXES:
                say(
                    f"note: a {config.record.suffix} file plays only once vbg finalises it (q, "
                    "Ctrl-C, the end); record to .mkv to keep what was written through a crash"
                )
        window = None
        if config.preview:
            try:
                window = stack.enter_context(contextlib.closing(PreviewWindow()))
            except SinkError as exc:
                problems.append(str(exc))
        if not sinks and window is None:
            raise SinkError(
                "Nothing to send the picture to. "
                + " ".join(problems)
                + " To record instead, add --record PATH."
            )
        for problem in problems:
            say(f"{problem} Going on without it.")
        if vcam is not None:
            say(f"virtual camera on {vcam.device}: pick it in Zoom, Meet or Teams")

        compositor = Compositor(background, mirror=config.mirror, light_wrap=config.light_wrap)
        pipeline = Pipeline(
            source,
            segmenter,
            compositor,
            sinks,
            mask_options=config.mask_options,
            display=window is not None,
            max_frames=config.max_frames,
            stats=stats,
            skip_still=config.skip_still,
            fallback=lambda: load("cpu", "float32"),
        )
        controls = Controls(compositor, pipeline, config, size=size, fps=fps, recording=recording)
        say(f"running: {source.description} {size[0]}x{size[1]} at {fps:g} fps, {label}")
        pipeline.start()
        try:
            if window is None:
                while not pipeline.wait(0.2):
                    controls.show_messages()
            else:
                _window_loop(window, pipeline, controls)
        finally:
            try:
                pipeline.stop()  # raises what a stage raised, after every sink is finalised
            finally:
                controls.show_messages()
                if config.stats:
                    stats.write_json(config.stats)
        if controls.recording is not None and controls.recording is not recording:
            say(f"recording saved to {controls.recording.path}")
    return stats


def _window_loop(window: PreviewWindow, pipeline: Pipeline, controls: Controls) -> None:
    frames = pipeline.display_frames
    last: Frame | None = None
    while pipeline.running and frames is not None:
        frame = frames.get(timeout=0.03)
        controls.show_messages()
        if frame is not None:
            last = frame
            window.show(draw_overlay(frame, controls.status_lines(), show_help=controls.show_help))
        action = window.poll(1)
        if action is not None and not controls.handle(action, last):
            break
