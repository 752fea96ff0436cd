"""``vbg run``: open the source, model, background and outputs, run the Pipeline, handle keys.

Everything opened here is held in one ExitStack, so a recording is finalised however the run ends
(quit key, Ctrl-C, SIGTERM, end of a file, or an error in a stage).

The output paths (the recording, the stats file, the keys' folder) are checked before the camera
opens (:func:`check_outputs`): a run is refused at once rather than after it, figures lost.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vbg.commands.frame_path import make_processor
from vbg.compositing.backgrounds import (
    COLORS,
    Background,
    BlurBackground,
    ColorBackground,
    FolderBackground,
    PassThrough,
    parse_color,
    parse_spec,
)
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.errors import ConfigError, SinkError
from vbg.images import Frame
from vbg.log import NoticeHandler
from vbg.outputs.files import check_folder, check_output_file, same_file, write_file
from vbg.outputs.preview import PreviewWindow, draw_overlay
from vbg.outputs.sinks import CRASH_SAFE_SUFFIXES, RecordingSink, Sink, VirtualCameraSink
from vbg.outputs.video import check_video_path
from vbg.pipeline import Pipeline
from vbg.segmentation.fallback import FallbackSegmenter
from vbg.segmentation.still import StillSceneGate
from vbg.sources.capture import open_source
from vbg.sources.reconnect import ReconnectingSource
from vbg.stats import Stats

log = logging.getLogger("vbg")
NOTICE_SECONDS = 3.0


def timestamped(folder: Path, prefix: str, suffix: str) -> Path:
    """A new file name in ``folder`` such as vbg-20260101-120000.mkv (-1, -2, ... added while
    the name exists: the keys never write over a file)."""
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
        self.recordings = [recording] if recording is not None else []  # all, for the stats
        self.configured: Background = compositor.background
        self.show_help = False
        self._color_index = -1
        self._notice = ""
        self._notice_until = 0.0
        self._fps_out = _RateMeter(pipeline.stats, "frames_out")
        self._mask_fps = _RateMeter(pipeline.stats, "masks")
        self.messages = NoticeHandler()  # what vbg says, for the overlay
        log.addHandler(self.messages)

    def close(self) -> None:
        """Stop collecting messages for the overlay."""
        log.removeHandler(self.messages)

    def notify(self, text: str) -> None:
        """Tell the user ``text`` (the terminal, and the overlay for a few seconds)."""
        log.info(text)

    def show_messages(self) -> None:
        """Put what vbg said last (a lost camera, a model moved to the CPU) in the overlay."""
        for text in self.messages.take():
            self._notice, self._notice_until = text, time.monotonic() + NOTICE_SECONDS

    def status_lines(self) -> list[str]:
        segmenter = self.pipeline.processor.segmenter
        lines = [
            f"out {self._fps_out.update():4.1f} fps  mask {self._mask_fps.update():4.1f} fps  "
            f"{segmenter.name} on {segmenter.device.type}",
            f"background: {self.compositor.background.name}"
            + ("  mirror" if self.compositor.mirror else "")
            + ("  REC" if self.recording else "")
            + "  (? for keys)",
        ]
        lasting = self.pipeline.processor.warning  # shown while it holds (nobody found)
        if lasting:
            lines.append(lasting)
        if self._notice and time.monotonic() < self._notice_until and self._notice != lasting:
            lines.append(self._notice)
        return lines

    def _step(self, delta: int) -> None:
        """n / p: a folder's picture after (before) the one last shown, also coming back from
        b, c or x; any other ``--background`` is shown again."""
        if isinstance(self.configured, FolderBackground):
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
            self.snapshot(frame)
        elif action == "help":
            self.show_help = not self.show_help
        return True

    def snapshot(self, frame: Frame) -> None:
        """The frame (H x W x 3 uint8 BGR) to a new PNG file in ``record_dir``."""
        path = timestamped(self.config.record_dir, "vbg-snapshot", ".png")
        try:
            write_file(path, _png(frame), f"snapshot '{path}'", overwrite=False)
        except (SinkError, ConfigError) as exc:
            self.notify(str(exc))
        else:
            self.notify(f"snapshot saved to {path}")

    def toggle_recording(self) -> None:
        """Stop the running recording (finalising the file), or start a new one."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            self.pipeline.remove_sink(recording)
            self.notify(f"recording saved to {recording.path} ({recording.frames_written} frames)")
            return
        path = timestamped(self.config.record_dir, "vbg", ".mkv")  # plays even after a crash
        try:  # not vital: a recording started with a key that fails leaves the call going
            self.recording = RecordingSink(path, *self.size, self.fps, vital=False)
        except (SinkError, ConfigError) as exc:
            self.notify(str(exc))
            return
        self.recordings.append(self.recording)
        self.pipeline.add_sink(self.recording)
        self.notify(f"recording to {path}")


def _png(frame: Frame) -> bytes:
    encoded, data = cv2.imencode(".png", frame)
    if not encoded:
        raise SinkError("The snapshot could not be encoded as PNG.")
    return np.asarray(data).tobytes()


def check_outputs(config: RunConfig, config_file: Path | None = None) -> None:
    """Refuse, before anything opens, the outputs that cannot be written: a recording or stats
    file that is the source, the background, ``config_file`` (the ``--config`` file) or each
    other (also through links), or that exists
    without ``overwrite`` (:class:`ConfigError`, exit 2); one whose folder is missing or does not
    take files, that names a folder, or that another vbg writes (:class:`SinkError`, exit 1);
    and, with the preview, a ``record_dir`` for the keys that cannot take their files (when it
    is the default, the current folder, only a warning: the keys may never be pressed)."""
    inputs: list[tuple[str, Path]] = []
    if config.camera_index is None:
        inputs.append(("the source", Path(config.source).expanduser()))
    background = parse_spec(config.background)
    if background.kind == "path":
        inputs.append(("the background", background.path))
    if config_file is not None:
        inputs.append(("the config file", config_file))
    outputs = [
        (what, path)
        for what, path in (("recording", config.record), ("statistics file", config.stats))
        if path is not None
    ]
    for what, path in outputs:
        for name, used in inputs:
            if same_file(path, used):
                raise ConfigError(f"The {what} '{path}' is {name}; give the {what} another name.")
    if len(outputs) == 2 and same_file(outputs[0][1], outputs[1][1]):
        raise ConfigError(
            f"The recording and the statistics file both name '{config.stats}'; give each its own."
        )
    if config.record is not None:
        check_video_path(config.record, overwrite=config.overwrite)
    if config.stats is not None:
        check_output_file(
            config.stats, f"statistics file '{config.stats}'", overwrite=config.overwrite
        )
    if config.preview:
        try:
            check_folder(config.record_dir, "recordings and snapshots (the r and s keys)")
        except SinkError as exc:
            if config.record_dir != RunConfig().record_dir:
                raise
            log.warning("%s Give --record-dir to use the keys.", exc)


def _write_stats(stats: Stats, config: RunConfig, failed: BaseException | None) -> None:
    """The run's figures to ``config.stats``. A failure is one line: raised, unless the run
    failed already (``failed``), whose error is the one to report; then it is logged."""
    if config.stats is None:
        return
    try:
        write_file(
            config.stats,
            stats.to_json().encode(),
            f"statistics file '{config.stats}'",
            overwrite=config.overwrite,
        )
    except (SinkError, ConfigError) as exc:
        if failed is None:
            raise
        log.error("%s", exc)


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


def _open_sinks(
    config: RunConfig,
    size: tuple[int, int],
    fps: float,
    stack: contextlib.ExitStack,
    camera_factory: Callable[..., Any] | None,
) -> tuple[list[Sink], RecordingSink | None, PreviewWindow | None]:
    """The outputs the config asks for: (all of them, the recording, the preview window).

    An output that cannot be had is left out with a message, unless none is left."""
    sinks: list[Sink] = []
    problems: list[str] = []  # outputs asked for that cannot be had
    vcam = None
    if config.virtual_cam:
        vcam = _open_virtual_camera(size, fps, camera_factory, problems)
        if vcam is not None:
            sinks.append(stack.enter_context(vcam))
    recording = None
    if config.record:
        recording = stack.enter_context(
            RecordingSink(config.record, *size, fps, overwrite=config.overwrite)
        )
        sinks.append(recording)
        log.info("recording to %s", config.record)
        if config.record.suffix.lower() not in CRASH_SAFE_SUFFIXES:
            log.info(
                "note: a %s file plays only once vbg finalises it (q, Ctrl-C, the end); record to "
                ".mkv to keep what was written through a crash",
                config.record.suffix,
            )
    window = None
    if config.preview:
        try:
            window = PreviewWindow()
        except SinkError as exc:
            problems.append(str(exc))
        else:
            stack.callback(window.destroy)
            sinks.append(window)
    if not sinks:
        raise SinkError(
            "Nothing to send the picture to. "
            + " ".join(problems)
            + " To record instead, add --record PATH."
        )
    for problem in problems:
        log.warning("%s Going on without it.", problem)
    if vcam is not None:
        log.info("virtual camera on %s: pick it in Zoom, Meet or Teams", vcam.device)
    return sinks, recording, window


def run(
    config: RunConfig,
    *,
    camera_factory: Callable[..., Any] | None = None,
    config_file: Path | None = None,
) -> Stats:
    """Run the live pipeline until quit, Ctrl-C, the end of a file source or ``max_frames``.

    ``camera_factory`` replaces ``pyvirtualcam.Camera`` (tests pass a stand-in);
    ``config_file``: the file the config was read from, an input no output may overwrite.
    Returns the run's Stats (also written to ``config.stats`` when set); ``record_frames`` in
    them is the frames the recordings' files hold.
    """
    check_outputs(config, config_file)
    stats = Stats()
    stats.mark("imported")  # start-up milestones (Stats.mark): Python, imports, the flags read
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
        if source.live:
            source = ReconnectingSource(source)
        stats.mark("source_opened")
        processor = make_processor(config, live=True)
        stats.mark("model_loaded")
        stack.callback(processor.compositor.background.close)
        segmenter = processor.segmenter
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
            sync=config.sync,
        )
        sinks, recording, window = _open_sinks(config, size, fps, stack, camera_factory)
        pipeline = Pipeline(
            source, processor, sinks, max_frames=config.max_frames, stats=stats, sync=config.sync
        )
        controls = Controls(
            processor.compositor, pipeline, config, size=size, fps=fps, recording=recording
        )
        stack.callback(controls.close)
        log.info("running: %s %dx%d at %g fps, %s", source.description, *size, fps, label)
        failed: BaseException | None = None
        try:  # start inside: a Ctrl-C while the threads start still stops them all
            pipeline.start()
            if window is None:
                _wait(pipeline)
            else:
                _window_loop(window, pipeline, controls)
        except BaseException as exc:
            failed = exc
            raise
        finally:
            try:
                pipeline.stop()  # raises what a stage raised, after every sink is finalised
            except BaseException as exc:
                failed = failed or exc
                raise
            finally:
                _finish_stats(stats, processor.segmenter)
                if controls.recordings:  # the frames in the files, not those sent to them
                    saved = sum(r.frames_written for r in controls.recordings)
                    stats.set_count("record_frames", saved)
                _write_stats(stats, config, failed)
        if controls.recording is not None:
            log.info(
                "recording saved to %s (%d frames)",
                controls.recording.path,
                controls.recording.frames_written,
            )
    return stats


def _wait(pipeline: Pipeline) -> None:
    while not pipeline.wait(0.2):
        pass


def _finish_stats(stats: Stats, segmenter: object) -> None:
    """What the policies around the model did, in the run's figures."""
    while isinstance(segmenter, StillSceneGate | FallbackSegmenter):
        if isinstance(segmenter, FallbackSegmenter) and segmenter.fell_back:
            stats.info["device"] = f"{segmenter.device.type} (after {segmenter.fell_back})"
        segmenter = segmenter.inner


def _window_loop(window: PreviewWindow, pipeline: Pipeline, controls: Controls) -> None:
    last: Frame | None = None
    while pipeline.running:
        frame = window.take()
        controls.show_messages()
        if frame is not None:
            last = frame
            window.show(draw_overlay(frame, controls.status_lines(), show_help=controls.show_help))
        action = window.poll(30 if frame is None else 1)
        if action is not None and not controls.handle(action, last):
            break
