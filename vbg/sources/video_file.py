"""A video file read with PyAV for ``vbg process``: every frame in order with its timestamp, and
the packets of its audio track, so that the output keeps the input's frame count, timestamps
(variable frame rate too) and sound.

:class:`VideoFileReader` is a :class:`~vbg.sources.capture.Source` (``read`` gives the next
Frame, H x W x 3 uint8 BGR, upright: a phone video's rotation is applied). It does not pace
itself or loop: the live ``vbg run --source FILE`` keeps OpenCV's
:class:`~vbg.sources.capture.VideoFileSource`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.audio.stream
import cv2
import numpy as np

from vbg.errors import SourceError
from vbg.sources.capture import Frame, Source, fit_size

DEFAULT_RATE = Fraction(30)


def _reason(exc: BaseException) -> str:
    """FFmpeg's or the OS's words for what went wrong, without the file name they repeat."""
    strerror = getattr(exc, "strerror", None)  # OSError's and PyAV's FFmpegError's
    return strerror if isinstance(strerror, str) and strerror else str(exc)


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` turned counterclockwise by ``rotation`` degrees (a multiple of 90, as phones
    write it), as a player shows it."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class VideoFileReader(Source):
    """A video file decoded frame by frame, in presentation order.

    After each :meth:`read`: ``pts`` (in ``time_base``) and ``time`` (seconds since the first
    frame) of the frame read, and ``timestamps``, the pts of every frame read so far.
    ``audio`` is the first audio track (a PyAV stream) or None; :meth:`take_audio` hands over
    its packets demuxed so far, in file order. ``rate`` is the average frame rate and
    ``frame_count`` the count the file declares (None when it does not).

    Raises :class:`SourceError` when the file is missing, unreadable, not a video, or its first
    frame cannot be decoded.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        if not path.exists():
            raise SourceError(f"Input '{path}' does not exist. Check the path.")
        if path.is_dir():
            raise SourceError(f"Input '{path}' is a folder. Give a photo or a video file.")
        try:
            self._container: Any = av.open(str(path))
        except PermissionError as exc:
            raise SourceError(
                f"Input '{path}' cannot be read ({_reason(exc)}). Check that it is a file you "
                "may read."
            ) from exc
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise SourceError(
                f"Input '{path}' cannot be read ({_reason(exc)}): it is not a video or picture "
                "vbg can decode. Use an MP4, MOV, MKV or WebM video, or a JPEG or PNG photo."
            ) from exc
        try:
            self._open()
        except BaseException:
            self._container.close()
            raise

    def _open(self) -> None:
        container = self._container
        if not container.streams.video:
            raise SourceError(
                f"Input '{self.path}' has no video track. Give a video file or a JPEG or PNG photo."
            )
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.audio: av.audio.stream.AudioStream | None = (
            container.streams.audio[0] if container.streams.audio else None
        )
        self.time_base: Fraction = self._stream.time_base or Fraction(1, 90000)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.rate: Fraction = Fraction(rate) if rate and 1 <= rate <= 1000 else DEFAULT_RATE
        self.fps = float(self.rate)
        self.frame_count: int | None = self._stream.frames or None
        self.timestamps: list[int] = []
        self.pts = 0
        self.time = 0.0
        self._audio_packets: deque[av.Packet] = deque()
        streams = [self._stream] + ([self.audio] if self.audio is not None else [])
        self._frames = self._decode(container.demux(*streams))
        self._first_pts: int | None = None
        first = next(self._frames, None)
        if first is None:
            raise SourceError(
                f"Input '{self.path}' has a video track but no frame vbg can decode. "
                "Use an MP4, MOV, MKV or WebM video."
            )
        self.rotation = first.rotation
        self._pending: Any = first
        self._fit: tuple[int, int] | None = None
        image = self._image(first)
        size = fit_size(image.shape[1], image.shape[0], f"Input '{self.path}'")
        if size != (image.shape[1], image.shape[0]):  # larger than 4K: scaled down
            self._fit = size
            image = self._image(first)
        self.width, self.height = size
        self._pending_image: Frame | None = image

    def _decode(self, packets: Iterator[Any]) -> Iterator[Any]:
        """The video frames of ``packets`` in presentation order; audio packets are kept."""
        try:
            for packet in packets:
                if packet.stream.type == "audio":
                    if packet.dts is not None:  # not the demuxer's empty end packet
                        self._audio_packets.append(packet)
                    continue
                yield from packet.decode()  # the empty end packet flushes the decoder
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(
                f"Input '{self.path}' cannot be decoded after frame {len(self.timestamps)} "
                f"({_reason(exc)}): the file is damaged."
            ) from exc

    def _image(self, frame: Any) -> Frame:
        image = _upright(frame.to_ndarray(format="bgr24"), self.rotation)
        if self._fit is not None:
            image = cv2.resize(image, self._fit, interpolation=cv2.INTER_AREA)
        return image

    def read(self) -> Frame | None:
        """The next frame (H x W x 3 uint8 BGR, upright), or None at the end of the file."""
        if self._pending_image is not None:
            frame, image = self._pending, self._pending_image
            self._pending = self._pending_image = None
        else:
            frame = next(self._frames, None)
            if frame is None:
                return None
            image = self._image(frame)
        self._stamp(frame.pts)
        return image

    def _stamp(self, pts: int | None) -> None:
        if pts is None:  # a stream without timestamps: one nominal frame after the last
            step = max(1, round(1 / (self.rate * self.time_base)))
            pts = self.timestamps[-1] + step if self.timestamps else 0
        if self._first_pts is None:
            self._first_pts = pts
        self.pts = pts
        self.time = float((pts - self._first_pts) * self.time_base)
        self.timestamps.append(pts)

    def take_audio(self) -> list[av.Packet]:
        """The audio packets demuxed since the last call, in file order (all of them once
        :meth:`read` has returned None)."""
        packets = list(self._audio_packets)
        self._audio_packets.clear()
        return packets

    def close(self) -> None:
        self._container.close()
