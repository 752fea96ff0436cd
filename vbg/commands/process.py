"""``vbg process``: one photo or one video file, offline, through the same frame path as
``vbg run`` (:class:`vbg.processor.FrameProcessor`: model, mask filters, compositor), with the
same options.

No threads: frames are read, segmented, filtered, composited and written in order, as fast as
the machine allows, with a progress bar for videos. Every frame gets a mask made from itself, so
the output is what ``vbg run`` shows when its model keeps up with the camera.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from vbg.commands.frame_path import make_processor
from vbg.config import RunConfig
from vbg.errors import BackgroundError, ConfigError, SinkError, SourceError
from vbg.images import IMAGE_SUFFIXES, Frame, Matte, read_image
from vbg.outputs.files import check_output_file, same_file, write_file
from vbg.outputs.sinks import Sink
from vbg.outputs.video import VIDEO_FORMATS, VideoWriter, check_video_path
from vbg.processor import FrameProcessor
from vbg.sources.video_file import VideoFileReader


def mask_image(matte: Matte, *, mirror: bool = False) -> np.ndarray:
    """The Matte (H x W uint8, 255 = person) as the picture to save; ``mirror`` flips it
    left-right as the output picture is, so that the two line up."""
    return cv2.flip(matte, 1) if mirror else matte


def _write_image(path: Path, image: np.ndarray, *, overwrite: bool) -> None:
    """``image`` (H x W x 3 uint8 BGR, or H x W uint8) to a picture file, whole or not at all."""
    encoded, data = (
        cv2.imencode(path.suffix.lower(), image)
        if path.suffix.lower() in IMAGE_SUFFIXES
        else (False, None)
    )
    if not encoded or data is None:
        raise SinkError(f"Cannot write image '{path}': use a .png or .jpg file name.")
    write_file(path, data.tobytes(), f"image '{path}'", overwrite=overwrite)


class _Progress:
    """A one-line progress bar on a terminal (plain lines when not a terminal)."""

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.5:
            return
        self._last = now
        rate = done / max(now - self.started, 1e-6)
        if self.total:
            filled = int(30 * min(done, self.total) / self.total)
            text = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} frames"
        else:
            text = f"{done} frames"
        end = "\n" if final or not self.stream.isatty() else ""
        self.stream.write(f"\r{text}  {rate:.1f} fps{end}")
        self.stream.flush()


class _LikeInput(Sink):
    """Output frames to a :class:`VideoWriter`, each at the timestamp of the input frame it was
    made from (frame n of the output is frame n of the input), with the input's audio packets
    as they are demuxed (``audio``)."""

    def __init__(self, writer: VideoWriter, reader: VideoFileReader, *, audio: bool) -> None:
        super().__init__()
        self.name = f"video '{writer.path}'"
        self._writer, self._reader, self._audio = writer, reader, audio

    @property
    def frames_saved(self) -> int | None:
        """The frames in the file once it is closed (or failed); None while it is written."""
        return self._writer.frames_saved

    def _write(self, frame: Frame) -> None:
        self._writer.write(frame, self._reader.timestamps[self._writer.frames_written])
        if self._audio:
            self._copy_audio()

    def _copy_audio(self) -> None:
        for packet in self._reader.take_audio():
            self._writer.write_audio(packet)

    def _close(self) -> None:
        if self._audio and not self._writer.closed:
            self._copy_audio()  # what came after the last frame (all of it at the end)
        self._writer.close()


def process_frames(
    source: VideoFileReader,
    processor: FrameProcessor,
    sink: Sink,
    *,
    mask_sink: Sink | None = None,
    progress: _Progress | None = None,
) -> int:
    """Every frame of ``source`` through ``processor`` into ``sink`` (and its mask into
    ``mask_sink``), in order; the clock is the file's frame time. Returns the frames written."""
    done = 0
    while (frame := source.read()) is not None:
        rendered = processor.process(frame, source.time)
        sink.write(rendered.frame)
        if mask_sink is not None and rendered.matte is not None:
            image = mask_image(rendered.matte, mirror=processor.compositor.mirror)
            mask_sink.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        done += 1
        if progress:
            progress.update(done)
    if progress:
        progress.update(done, final=True)
    return done


def _open_input(path: Path) -> np.ndarray | VideoFileReader:
    """The photo (H x W x 3 uint8 BGR, by its suffix) or the video at ``path``.

    Raises :class:`SourceError` saying whether it is missing or cannot be read."""
    if not path.exists():
        raise SourceError(f"Input '{path}' does not exist. Check the path.")
    if path.is_dir():
        raise SourceError(f"Input '{path}' is a folder. Give a photo or a video file.")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            return read_image(path)
        except BackgroundError as exc:
            cause = exc.__cause__
            why = (
                cause.strerror
                if isinstance(cause, OSError) and cause.strerror
                else "damaged, or not a picture"
            )
            if "too large" in str(exc):  # read_image's pixel limit: its message says what to do
                raise SourceError(f"Input {str(exc)[0].lower()}{str(exc)[1:]}") from exc
            raise SourceError(
                f"Input '{path}' cannot be read ({why}). Use a JPEG or PNG photo."
            ) from exc
    return VideoFileReader(path)


def _check_outputs(input_path: Path, photo: bool, paths: list[Path], *, overwrite: bool) -> None:
    """Raise before any work when an output cannot be what the input is: a name that cannot be
    (the input's own, also through a link; another output's; a suffix of the wrong kind; an
    existing file without ``overwrite``) is a usage error (:class:`ConfigError`), a folder that
    is not there or not writable, or a file another vbg writes, a :class:`SinkError`."""
    for n, path in enumerate(paths):
        if same_file(path, input_path):
            raise ConfigError(f"'{path}' is the input; give the output another name.")
        if any(same_file(path, other) for other in paths[:n]):
            raise ConfigError(f"'{path}' is given for two outputs; give each its own name.")
        if photo and path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(
                f"'{path}' is not a picture file name; the input '{input_path}' is a photo, so "
                "use a .png or .jpg file name."
            )
        if not photo:
            if path.suffix.lower() in IMAGE_SUFFIXES or path.suffix.lower() not in VIDEO_FORMATS:
                raise ConfigError(
                    f"'{path}' is not a video file name; the input '{input_path}' is a video, so "
                    f"use one of {', '.join(VIDEO_FORMATS)}."
                )
            check_video_path(path, overwrite=overwrite)
        else:
            check_output_file(path, f"image '{path}'", overwrite=overwrite)


def process_file(
    input_path: Path,
    output_path: Path,
    config: RunConfig,
    *,
    save_mask: Path | None = None,
    progress: bool = True,
) -> int:
    """Replace the background of a photo or video as ``config`` says (model, mask filters,
    background, mirror, light wrap: the keys of ``vbg run``); returns the frames written.

    Photos (by suffix) give a photo; anything else is read as a video and written as H.264 at
    the same size, with every frame at its input timestamp and the input's audio track.
    ``save_mask`` also writes the person mask (0..255); ``progress`` draws a progress bar on
    stderr. The input and the output names are checked before the model is loaded.
    """
    with contextlib.ExitStack() as stack:
        opened = _open_input(input_path)
        photo = isinstance(opened, np.ndarray)
        if isinstance(opened, VideoFileReader):
            stack.enter_context(opened)
        outputs = [output_path] + ([save_mask] if save_mask is not None else [])
        overwrite = config.overwrite
        _check_outputs(input_path, photo, outputs, overwrite=overwrite)
        processor = make_processor(config, live=False)
        stack.callback(processor.compositor.background.close)
        if isinstance(opened, np.ndarray):
            return _process_photo(opened, output_path, processor, save_mask, overwrite=overwrite)
        reader = opened
        size = (reader.width, reader.height)
        writer = VideoWriter(
            output_path,
            *size,
            rate=reader.rate,
            time_base=reader.time_base,
            audio=reader.audio,
            overwrite=overwrite,
        )
        sink = stack.enter_context(_LikeInput(writer, reader, audio=reader.audio is not None))
        mask_sink = None
        if save_mask is not None:
            mask_writer = VideoWriter(
                save_mask, *size, rate=reader.rate, time_base=reader.time_base, overwrite=overwrite
            )
            mask_sink = stack.enter_context(_LikeInput(mask_writer, reader, audio=False))
        bar = _Progress(reader.frame_count, sys.stderr) if progress else None
        try:
            process_frames(reader, processor, sink, mask_sink=mask_sink, progress=bar)
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: what is written is kept, playable
            stack.close()  # finalised first, so that the count is what the file holds
            raise KeyboardInterrupt(
                f"{writer.frames_saved or 0} frames written to {output_path}, playable"
            ) from exc
        for finished in (mask_sink, sink):  # finalised here: a failure to finish is raised
            if finished is not None:
                finished.close()
        return writer.frames_saved or 0


def _process_photo(
    frame: np.ndarray,
    output_path: Path,
    processor: FrameProcessor,
    save_mask: Path | None,
    *,
    overwrite: bool,
) -> int:
    rendered = processor.process(frame, 0.0)
    _write_image(output_path, rendered.frame, overwrite=overwrite)
    if save_mask and rendered.matte is not None:
        mask = mask_image(rendered.matte, mirror=processor.compositor.mirror)
        _write_image(save_mask, mask, overwrite=overwrite)
    return 1
