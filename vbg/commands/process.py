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
from vbg.errors import SinkError, SourceError
from vbg.images import IMAGE_SUFFIXES, Mask
from vbg.outputs.sinks import RECORDING_CODECS, RecordingSink, Sink
from vbg.processor import FrameProcessor
from vbg.sources.capture import Source, VideoFileSource, open_source


def mask_image(mask: Mask, *, mirror: bool = False) -> np.ndarray:
    """Mask (H x W float32 in [0, 1]) -> H x W uint8 in 0..255, for saving; ``mirror`` flips it
    left-right as the output picture is, so that the two line up."""
    image = np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.flip(image, 1) if mirror else image


def _write_image(path: Path, image: np.ndarray) -> None:
    if not path.parent.is_dir():
        raise SinkError(f"Cannot write '{path}': folder '{path.parent}' does not exist.")
    if path.suffix.lower() not in IMAGE_SUFFIXES or not cv2.imwrite(str(path), image):
        raise SinkError(f"Cannot write image '{path}': use a .png or .jpg file name.")


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


def process_frames(
    source: Source,
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
        rendered = processor.process(frame, done / source.fps)
        sink.write(rendered.frame)
        if mask_sink is not None and rendered.mask is not None:
            image = mask_image(rendered.mask, mirror=processor.compositor.mirror)
            mask_sink.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        done += 1
        if progress:
            progress.update(done)
    if progress:
        progress.update(done, final=True)
    return done


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

    Photos (by suffix) give a photo; anything else is read as a video and written as a video at
    the same size and frame rate. ``save_mask`` also writes the person mask (0..255);
    ``progress`` draws a progress bar on stderr.
    """
    if not input_path.exists():
        raise SourceError(f"Input '{input_path}' does not exist.")
    photo = input_path.suffix.lower() in IMAGE_SUFFIXES and input_path.is_file()
    if not photo:
        for path in (output_path, save_mask):
            if path is not None and path.suffix.lower() not in RECORDING_CODECS:
                raise SinkError(
                    f"'{path}' is not a video file name; the input is a video, so use one of "
                    f"{', '.join(RECORDING_CODECS)}."
                )
    processor = make_processor(config, live=False)
    with contextlib.ExitStack() as stack:
        stack.callback(processor.compositor.background.close)
        if photo:
            return _process_photo(input_path, output_path, processor, save_mask)
        source = stack.enter_context(VideoFileSource(input_path, realtime=False))
        size = (source.width, source.height)
        writer = stack.enter_context(RecordingSink(output_path, *size, source.fps))
        mask_writer = (
            stack.enter_context(RecordingSink(save_mask, *size, source.fps)) if save_mask else None
        )
        bar = _Progress(source.frame_count, sys.stderr) if progress else None
        return process_frames(source, processor, writer, mask_sink=mask_writer, progress=bar)


def _process_photo(
    input_path: Path, output_path: Path, processor: FrameProcessor, save_mask: Path | None
) -> int:
    with open_source(str(input_path), realtime=False) as source:
        frame = source.read()
    if frame is None:
        raise SourceError(f"Photo '{input_path}' has no picture in it.")
    rendered = processor.process(frame, 0.0)
    _write_image(output_path, rendered.frame)
    if save_mask and rendered.mask is not None:
        _write_image(save_mask, mask_image(rendered.mask, mirror=processor.compositor.mirror))
    return 1
