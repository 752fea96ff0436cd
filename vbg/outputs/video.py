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

A full disk: before each frame the writer checks the room left for the file (the disk's free
space, and the process's file-size limit, ``ulimit -f``) against what finishing the file needs
(the encoder's frames still inside it, the index, :data:`RESERVE_BYTES` to spare). When the room
runs out it finishes the file there, index and all, and raises :class:`SinkError` saying so: the
file plays and holds every frame written. A write that fails anyway (another program filled the
disk at once, a device gone) is said at once too; the file is then finished as far as the
container allows (a Matroska file plays up to its last complete cluster; an MP4 or MOV file
without its index does not play) and the message says how many frames it holds, counted in the
file itself (:attr:`VideoWriter.frames_saved`).

An output file is held by :func:`vbg.outputs.files.claim` while it is written: an existing file
is replaced only with ``overwrite``, and never while another vbg writes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.audio.stream
import cv2
import numpy as np

from vbg.errors import SinkError
from vbg.outputs.files import check_output_file, claim, reason

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
# Room kept free on the disk for finishing a file (its index, Matroska's cues, MP4's moov atom
# moved to the front): this much, and INDEX_BYTES_PER_PACKET for each packet written so far (an
# MP4 index takes 4 to 20 bytes a packet), and the frames the encoder has not given out yet.
RESERVE_BYTES = 64 * 1024
INDEX_BYTES_PER_PACKET = 32


def check_video_path(path: Path, *, overwrite: bool = False) -> None:
    """Raise unless a video can be written to ``path``: a known suffix, a folder that takes a
    new file, not a folder itself, not written by another vbg (:class:`SinkError`), and not an
    existing file unless ``overwrite`` (:class:`~vbg.errors.ConfigError`); cheap, so that a run
    can say so before it starts."""
    if path.suffix.lower() not in VIDEO_FORMATS:
        raise SinkError(
            f"Cannot write video '{path}': use a file name ending in "
            f"{', '.join(VIDEO_FORMATS)} (.mkv still plays if vbg is killed; .mp4 for sharing)."
        )
    check_output_file(path, f"video '{path}'", overwrite=overwrite)


def count_frames(path: Path) -> int:
    """The video frames a player finds in ``path``: the packets of its first video track, up to
    the first damaged or missing one (0 when the file does not open, an MP4 without its index)."""
    count = 0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(video=0):
                if packet.size and not packet.is_corrupt:
                    count += 1
    except (av.FFmpegError, OSError, IndexError):  # what is counted so far is in the file
        pass
    return count


def _file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), or None (none, or Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


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
        overwrite: bool = False,
    ) -> None:
        if width <= 0 or height <= 0:
            raise SinkError(f"Cannot write video '{path}': the size {width}x{height} is empty.")
        check_video_path(path, overwrite=overwrite)
        self.path = path
        self.size = (width, height)
        self.rate = Fraction(rate).limit_denominator(1001) if rate > 0 else Fraction(30)
        self.time_base = time_base or 1 / self.rate
        self.frames_written = 0  # frames given to write
        self.frames_saved: int | None = None  # frames in the file, once it is finished
        self._packets = 0  # packets muxed, video and audio
        self._video_packets = 0
        self._bytes = 0  # bytes of the packets muxed
        self._largest = 0  # the largest video packet so far
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
        self._claim = claim(path, f"video '{path}'", overwrite=overwrite)
        try:
            self._container: Any = av.open(
                str(path), "w", format=VIDEO_FORMATS[suffix], options=options
            )
        except (av.FFmpegError, OSError) as exc:
            self._claim.release(remove=True)
            raise SinkError(f"Cannot write video '{path}' ({reason(exc)}).") from exc
        try:
            self._video = self._add_video(preset, threads)
            self._audio = self._add_audio(audio, suffix) if audio is not None else None
        except (av.FFmpegError, OSError, ValueError) as exc:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
            self._claim.release(remove=True)
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
    def closed(self) -> bool:
        """Whether the file is finished (closed, or stopped by a failure)."""
        return self._container is None

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
        if self._container is None:
            raise SinkError(f"Video '{self.path}' is closed.")
        self._check_room()
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
        if self._container is None:
            raise SinkError(f"Video '{self.path}' is closed.")
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
                self._packets += 1
                self._bytes += packet.size
                if packet.stream is self._video:
                    self._video_packets += 1
                    self._largest = max(self._largest, packet.size)
        except (av.FFmpegError, OSError) as exc:
            raise self._failed("writing it failed", exc) from exc

    def _room(self) -> tuple[int, str, str] | None:
        """(bytes the file may still grow by, what limits it and the fix), or None when
        nothing says."""
        try:
            on_disk = os.stat(self.path).st_size
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return None
        room = (free, "the disk is nearly full", "Free some space, or write to another disk.")
        limit = _file_size_limit()
        if limit is not None and limit - on_disk < free:
            room = (
                limit - on_disk,
                "the file-size limit (ulimit -f) is reached",
                "Raise the limit, or write a shorter video.",
            )
        # What the muxer holds that is not on the disk yet (Matroska's open cluster, a buffer).
        return room[0] - max(0, self._bytes - on_disk), room[1], room[2]

    def _check_room(self) -> None:
        """Finish the file, and raise, when the room left would not take this frame and what
        finishing the file writes."""
        room = self._room()
        if room is None:
            return
        pixels = self.size[0] * self.size[1]
        # This frame may be a keyframe, as large as the largest packet so far; the frames the
        # encoder still holds come out at about the mean size of the others (the first packet
        # is a keyframe). Before there are packets to go by, guesses.
        largest = self._largest or pixels // 4
        others = self._video_packets - 1
        mean = (self._bytes - self._largest) // others if others > 0 else pixels // 32
        inside = self.frames_written - self._video_packets
        needed = RESERVE_BYTES + INDEX_BYTES_PER_PACKET * self._packets + largest + mean * inside
        if room[0] >= needed:
            return
        self.close()
        raise SinkError(
            f"Stopped writing video '{self.path}': {room[1]} ({max(room[0], 0) // 1024} KiB "
            f"left). It is finished and plays, with {self.frames_saved} frames. {room[2]}"
        )

    def _failed(self, what: str, exc: BaseException) -> SinkError:
        """Finish the file as far as the container allows after a failed write, count the
        frames it holds, and say so."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()  # the trailer, where the muxer can still write it
        self._claim.release()
        self.frames_saved = count_frames(self.path)
        if self.frames_saved:
            held = f"it plays, with the first {self.frames_saved} frames"
        else:
            held = "it holds no frame a player can show"
            if self.path.suffix.lower() not in CRASH_SAFE_SUFFIXES:
                held += " (an .mp4 or .mov file needs its index at the end; .mkv keeps what was"
                held += " written)"
        return SinkError(
            f"Video '{self.path}': {what} ({reason(exc)}); {held}. Free some space, or write "
            "somewhere else."
        )

    def close(self) -> None:
        """Flush the encoders and finalise the file (for MP4: write its index at the front).
        Safe to call twice. Raises :class:`SinkError` (the file finished as far as it could be)
        when the file cannot be finished."""
        container = self._container
        if container is None:
            return
        try:
            for stream in (self._video, self._audio if self._transcode_audio else None):
                if stream is not None:
                    self._mux(stream.encode(None))
            self._container = None
            container.close()
        except (av.FFmpegError, OSError) as exc:
            self._container = container
            raise self._failed("finishing it failed", exc) from exc
        self._claim.release()
        self.frames_saved = self.frames_written
