"""``vbg process``: one photo or one video file, offline, every frame with its own mask.

No threads: frames are read, segmented, composited and written in order, as fast as the machine
allows, with a progress bar for videos. Each mask is upsampled guided by its frame;
there is no temporal smoothing: every frame has its own mask.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from vbg.compositing.backgrounds import open_background
from vbg.compositing.compositor import Compositor
from vbg.errors import SinkError, SourceError
from vbg.images import IMAGE_SUFFIXES
from vbg.mask_filters import MaskRefiner
from vbg.outputs.sinks import RECORDING_CODECS, RecordingSink
from vbg.segmentation.segmenter import Segmenter
from vbg.sources.capture import VideoFileSource, open_source

Frame = np.ndarray  # H x W x 3 uint8, BGR
Mask = np.ndarray  # H x W float32 in [0, 1]


def mask_image(mask: Mask) -> np.ndarray:
    """Mask (H x W float32 in [0, 1]) -> H x W uint8 in 0..255, for saving."""
    return np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)


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


def process_file(
    input_path: Path,
    output_path: Path,
    *,
    background: str,
    segmenter: Segmenter,
    save_mask: Path | None = None,
    progress: bool = True,
) -> int:
    """Replace the background of a photo or video; returns the number of frames written.

    Photos (by suffix) give a photo; anything else is read as a video and written as a video at
    the same size and frame rate. ``save_mask`` also writes the person mask (0..255);
    ``progress`` draws a progress bar on stderr.
    """
    compositor = Compositor(open_background(background))
    try:
        if input_path.suffix.lower() in IMAGE_SUFFIXES and input_path.is_file():
            return _process_photo(input_path, output_path, compositor, segmenter, save_mask)
        return _process_video(input_path, output_path, compositor, segmenter, save_mask, progress)
    finally:
        compositor.background.close()


def _process_photo(
    input_path: Path,
    output_path: Path,
    compositor: Compositor,
    segmenter: Segmenter,
    save_mask: Path | None,
) -> int:
    with open_source(str(input_path), realtime=False) as source:
        frame = source.read()
    if frame is None:
        raise SourceError(f"Photo '{input_path}' has no picture in it.")
    mask = MaskRefiner().refine(segmenter.predict(frame), frame)
    _write_image(output_path, compositor.composite(frame, mask, 0.0))
    if save_mask:
        _write_image(save_mask, mask_image(mask))
    return 1


def _process_video(
    input_path: Path,
    output_path: Path,
    compositor: Compositor,
    segmenter: Segmenter,
    save_mask: Path | None,
    progress: bool,
) -> int:
    for path in (output_path, save_mask):
        if path is not None and path.suffix.lower() not in RECORDING_CODECS:
            raise SinkError(
                f"'{path}' is not a video file name; the input is a video, so use one of "
                f"{', '.join(RECORDING_CODECS)}."
            )
    with contextlib.ExitStack() as stack:
        if not input_path.exists():
            raise SourceError(f"Input '{input_path}' does not exist.")
        source = stack.enter_context(VideoFileSource(input_path, realtime=False))
        size = (source.width, source.height)
        writer = stack.enter_context(RecordingSink(output_path, *size, source.fps))
        mask_writer = (
            stack.enter_context(RecordingSink(save_mask, *size, source.fps)) if save_mask else None
        )
        bar = _Progress(source.frame_count, sys.stderr) if progress else None
        refiner = MaskRefiner()
        done = 0
        while (frame := source.read()) is not None:
            mask = refiner.refine(segmenter.predict(frame), frame)
            writer.write(compositor.composite(frame, mask, done / source.fps))
            if mask_writer is not None:
                mask_writer.write(cv2.cvtColor(mask_image(mask), cv2.COLOR_GRAY2BGR))
            done += 1
            if bar:
                bar.update(done)
        if bar:
            bar.update(done, final=True)
        return done
