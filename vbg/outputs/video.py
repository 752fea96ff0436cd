"""Video files written with PyAV: H.264 video (yuv420p, the profile browsers, QuickTime and phones
play) in Matroska (.mkv), MP4 (.mp4, .m4v) or QuickTime (.mov), and an audio track taken from an
input file (its packets copied, or transcoded to AAC where the container or its players do not
take the codec).

One class, :class:`VideoWriter`, serves the live recording
(:class:`vbg.outputs.sinks.RecordingSink`, frames at a constant rate) and ``vbg process`` (each
frame at the timestamp of the input frame it was made from, variable frame rate included).

Crash safety: a Matroska file is written in clusters of at most :data:`CLUSTER_MS` and each
cluster goes to the operating system as soon as it is complete, so after ``kill -9`` the file
plays up to the last complete cluster (what is lost: the open cluster and the frames still inside
the encoder). An MP4 or MOV file has its index (the moov atom) written at the end, moved to the
front so that it plays while it downloads ("faststart"), so it plays only once finalised.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.audio.stream
import cv2
import numpy as np

from vbg.errors import SinkError

log = logging.getLogger("vbg")

Frame = np.ndarray  # H x W x 3 uint8, BGR

# Suffix -> FFmpeg muxer.
VIDEO_FORMATS = {".mkv": "matroska", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
CRASH_SAFE_SUFFIXES = (".mkv",)  # play up to the last cluster written if vbg is killed
# Audio codecs copied as they are into MP4 and MOV: the ones every player of those files plays.
# Anything else (PCM, Vorbis, Opus, FLAC, ...) is transcoded to AAC there; Matroska takes
# whatever its muxer takes.
MP4_AUDIO_CODECS = frozenset({"aac", "mp3"})
AUDIO_CODEC = "aac"
AUDIO_BIT_RATE_PER_CHANNEL = 64_000

VIDEO_CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
CRF = 23  # x264's default quality: visually close to the source at a webcam's detail
# x264 presets. The live recording shares a laptop's CPU with the model (benchmarks/video_writer.py
# measures each preset); vbg process has the machine to itself and no clock to keep.
LIVE_PRESET = "ultrafast"
LIVE_THREADS = 2
FILE_PRESET = "veryfast"
CLUSTER_MS = 500  # a Matroska cluster is written out at least this often
# The colours: OpenCV's BGR -> I420 conversion is BT.601 with limited range; say so in the stream
# so that players do not guess BT.709 for HD sizes.
COLORSPACE_BT601 = 6  # AVCOL_SPC_SMPTE170M
COLOR_RANGE_LIMITED = 1  # AVCOL_RANGE_MPEG


def check_video_path(path: Path) -> None:
    """Raise :class:`SinkError` unless a video can be written to ``path`` (a known suffix, an
    existing folder); cheap, so that a run can say so before it starts."""
    if path.suffix.lower() not in VIDEO_FORMATS:
        raise SinkError(
            f"Cannot write video '{path}': use a file name ending in "
            f"{', '.join(VIDEO_FORMATS)} (.mkv still plays if vbg is killed; .mp4 for sharing)."
        )
    if not path.parent.is_dir():
        raise SinkError(f"Cannot write video '{path}': folder '{path.parent}' does not exist.")


def _even(n: int) -> int:
    return n + (n % 2)


class VideoWriter:
    """One video file: H.264 from BGR frames, and optionally the audio track of an input.

    ``rate`` is the nominal frame rate (frames per second, a Fraction keeps 30000/1001 exact).
    ``time_base`` is the unit of the ``pts`` given to :meth:`write` (default ``1 / rate``: frame
    numbers). ``audio`` is an input file's audio stream (PyAV); its packets, given to
    :meth:`write_audio`, are copied or transcoded to AAC. ``preset`` and ``threads`` are
    x264's (threads 0: as many as x264 likes). Odd sizes are padded to even ones (yuv420p has
    one colour sample per 2 x 2 pixels) by repeating the last row or column.

    Raises :class:`SinkError` when the file cannot be written.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        *,
        rate: Fraction | float,
        time_base: Fraction | None = None,
        audio: av.audio.stream.AudioStream | None = None,
        preset: str = FILE_PRESET,
        threads: int = 0,
    ) -> None:
        check_video_path(path)
        if width <= 0 or height <= 0:
            raise SinkError(f"Cannot write video '{path}': the size {width}x{height} is empty.")
        self.path = path
        self.size = (width, height)
        self.rate = Fraction(rate).limit_denominator(1001) if rate > 0 else Fraction(30)
        self.time_base = time_base or 1 / self.rate
        self.frames_written = 0
        self._last_pts: int | None = None
        self._transcode_audio = False
        self._pad = (_even(height) - height, _even(width) - width)
        suffix = path.suffix.lower()
        options = {"movflags": "+faststart"} if VIDEO_FORMATS[suffix] != "matroska" else {}
        if suffix in CRASH_SAFE_SUFFIXES:
            # A cluster at most every CLUSTER_MS, each written out at once; input timestamps
            # kept as they are (an AAC track's priming packet before 0 would otherwise shift
            # every stream).
            options = {
                "flush_packets": "1",
                "cluster_time_limit": str(CLUSTER_MS),
                "avoid_negative_ts": "disabled",
            }
        try:
            self._container: Any = av.open(
                str(path), "w", format=VIDEO_FORMATS[suffix], options=options
            )
        except (av.FFmpegError, OSError) as exc:
            raise SinkError(f"Cannot write video '{path}' ({exc}).") from exc
        try:
            self._video = self._add_video(preset, threads)
            self._audio = self._add_audio(audio, suffix) if audio is not None else None
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._container.close()
            raise SinkError(f"Cannot write video '{path}' ({exc}).") from exc

    def _add_video(self, preset: str, threads: int) -> Any:
        stream = self._container.add_stream(
            VIDEO_CODEC, rate=self.rate, options={"preset": preset, "crf": str(CRF)}
        )
        stream.width, stream.height = _even(self.size[0]), _even(self.size[1])
        stream.pix_fmt = PIXEL_FORMAT
        stream.time_base = self.time_base
        context = stream.codec_context
        context.time_base = self.time_base
        context.thread_count = threads
        context.colorspace = COLORSPACE_BT601
        context.color_range = COLOR_RANGE_LIMITED
        return stream

    def _add_audio(self, template: av.audio.stream.AudioStream, suffix: str) -> Any:
        codec = template.codec_context.name
        if suffix in CRASH_SAFE_SUFFIXES:
            copy = codec in self._container.supported_codecs
        else:
            copy = codec in MP4_AUDIO_CODECS
        if copy:
            return self._container.add_stream_from_template(template)
        self._transcode_audio = True
        rate = template.codec_context.sample_rate
        stream = self._container.add_stream(AUDIO_CODEC, rate=rate)
        stream.codec_context.layout = template.codec_context.layout
        channels = template.codec_context.channels
        stream.codec_context.bit_rate = AUDIO_BIT_RATE_PER_CHANNEL * max(channels, 1)
        log.debug("audio: %s transcoded to AAC for %s", codec, self.path.name)
        return stream

    @property
    def audio_copied(self) -> bool:
        """Whether the audio track's packets are copied as they are (False: transcoded to AAC,
        or no audio track)."""
        return self._audio is not None and not self._transcode_audio

    def write(self, frame: Frame, pts: int | None = None) -> None:
        """Encode one frame: H x W x 3 uint8 BGR at the writer's size; ``pts`` in ``time_base``
        (default: the frame's number). Timestamps must increase; one that does not is moved one
        tick after the last (a damaged input's duplicate)."""
        if frame.shape != (self.size[1], self.size[0], 3):
            raise SinkError(
                f"Video '{self.path}' is {self.size[0]}x{self.size[1]}; a frame of shape "
                f"{frame.shape} cannot go into it."
            )
        if pts is None:
            pts = self.frames_written
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        if any(self._pad):
            frame = cv2.copyMakeBorder(
                frame, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE
            )
        # BGR -> planar 4:2:0 in one OpenCV call (BT.601, limited range; half the time of swscale).
        planes = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), np.uint8)
        picture = av.VideoFrame.from_ndarray(planes, format=PIXEL_FORMAT)
        picture.pts = pts
        picture.time_base = self.time_base
        picture.colorspace = COLORSPACE_BT601
        picture.color_range = COLOR_RANGE_LIMITED
        self._mux(self._video.encode(picture))
        self.frames_written += 1

    def write_audio(self, packet: av.Packet) -> None:
        """One packet of the input's audio stream (the ``audio`` given at construction), copied
        or transcoded. Packets come in the input's order; the muxer interleaves them with the
        video."""
        if self._audio is None:
            raise SinkError(f"Video '{self.path}' was opened without an audio track.")
        if packet.dts is None and packet.pts is None:  # a demuxer's empty end-of-stream packet
            return
        if self._transcode_audio:
            for decoded in packet.decode():
                self._mux(self._audio.encode(decoded))
        else:
            packet.stream = self._audio
            self._mux([packet])

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            for packet in packets:
                self._container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise SinkError(f"Writing video '{self.path}' failed ({exc}).") from exc

    def close(self) -> None:
        """Flush the encoders and finalise the file (for MP4: write its index at the front)."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            try:
                for stream in (self._video, self._audio if self._transcode_audio else None):
                    if stream is not None:
                        for packet in stream.encode(None):
                            container.mux(packet)
            finally:
                container.close()
        except (av.FFmpegError, OSError) as exc:
            raise SinkError(f"Finishing video '{self.path}' failed ({exc}).") from exc
