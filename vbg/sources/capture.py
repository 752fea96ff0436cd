"""Sources: where frames come from (a camera, a video file, or a still image).

Every source has the same small surface: ``width``, ``height``, ``fps``, ``read()`` returning the
next Frame (H x W x 3 uint8 BGR) or None at the end, and ``close()``. A file source can play at its
own frame rate like a camera (``realtime=True``), which is how the live pipeline is tested without
a camera. Frames are scaled to cover the requested size and centre-cropped, never stretched.

A source's own size (no ``width``/``height`` asked) is kept within what vbg's outputs carry
(:func:`fit_size`): larger than :data:`MAX_SIZE` (4K UHD, 3840x2160, either way round) it is
scaled down, with one line saying so (a 12000x9000 photo would otherwise run at 0.1 fps in 5 GB
and give a video few players open); smaller than :data:`MIN_SIDE` on a side it is refused (the
optical flow and the encoder work on blocks of pixels).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import cv2
import numpy as np

from vbg.errors import BackgroundError, SourceError, SourceLost
from vbg.images import IMAGE_SUFFIXES, cover, read_image

log = logging.getLogger("vbg")

Frame = np.ndarray  # H x W x 3 uint8, BGR

MAX_SIZE = (3840, 2160)  # long side, short side: the most a source's own size is taken as
MIN_SIDE = 16  # pixels: smaller, OpenCV's optical flow refuses the frame

CAMERA_DEFAULT_SIZE = (1280, 720)
CAMERA_DEFAULT_FPS = 30.0
STILL_DEFAULT_FPS = 30.0


def fit_size(width: int, height: int, description: str) -> tuple[int, int]:
    """The size a source of ``width`` x ``height`` is taken at: its own, or scaled down (keeping
    its aspect, even numbers) to fit :data:`MAX_SIZE` either way round, with a line saying so.

    Raises :class:`SourceError` when a side is below :data:`MIN_SIDE`."""
    if min(width, height) < MIN_SIDE:
        raise SourceError(
            f"{description} is {width}x{height} pixels, too small: vbg needs at least "
            f"{MIN_SIDE}x{MIN_SIDE}. Use a larger picture or video, or ask for a size with "
            "--width and --height."
        )
    scale = min(MAX_SIZE[0] / max(width, height), MAX_SIZE[1] / min(width, height))
    if scale >= 1:
        return width, height
    fitted = (
        max(MIN_SIDE, int(width * scale) // 2 * 2),
        max(MIN_SIDE, int(height * scale) // 2 * 2),
    )
    log.warning(
        "%s is %dx%d; scaled down to %dx%d (vbg takes at most %dx%d, 4K, as its own size; "
        "--width and --height ask for another).",
        description, width, height, *fitted, *MAX_SIZE,
    )  # fmt: skip
    return fitted


class Source:
    """Base class of sources; a context manager whose ``close`` is safe to call twice."""

    width: int
    height: int
    fps: float
    description: str
    live = False  # a camera: read may raise SourceLost, and reopen may bring it back
    notice: str | None = None  # set while the frames read are stand-ins (a lost camera)

    def read(self) -> Frame | None:
        """The next frame (H x W x 3 uint8 BGR), or None at the end of a file.

        A live source raises :class:`SourceLost` when its device stops sending frames.
        """
        raise NotImplementedError

    @property
    def _label(self) -> str:
        """The source as a message starts with it: "Camera 0", "Source 'talk.mp4'"."""
        return self.description.capitalize() if self.live else f"Source '{self.description}'"

    def reopen(self) -> None:
        """Open a lost live source again; raises :class:`SourceLost` while it is still gone."""
        raise SourceLost(f"{self.description} cannot be reopened.")

    def close(self) -> None:
        """Release the camera or file."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Pacer:
    """Sleeps so successive frames leave at ``fps``, like a camera delivering them."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if self._next == 0.0 or now - self._next > 1.0:  # first frame, or fell far behind
            self._next = now
        elif self._next > now:
            time.sleep(self._next - now)
        self._next += self.period


def _first_frame(capture: cv2.VideoCapture) -> Frame | None:
    """The first frame of an opened capture; None (and the capture released) if there is none."""
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        return None
    return frame


class _CaptureSource(Source):
    """An OpenCV capture (camera or file) whose first frame was read when it was opened."""

    _pacer: _Pacer | None = None

    def _start(
        self,
        capture: cv2.VideoCapture,
        first: Frame,
        *,
        width: int,
        height: int,
        fps: float,
        default_fps: float,
    ) -> None:
        self._capture = capture
        self._first: Frame | None = first
        self.width, self.height = (
            (width, height) if width else fit_size(first.shape[1], first.shape[0], self._label)
        )
        reported = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (reported if 1 <= reported <= 240 else default_fps)

    def _read_raw(self) -> Frame | None:
        """The next frame as the capture gives it, or None at the end."""
        raise NotImplementedError

    def read(self) -> Frame | None:
        frame: Frame | None
        if self._first is not None:
            frame, self._first = self._first, None
        else:
            frame = self._read_raw()
            if frame is None:
                return None
        if self._pacer is not None:
            self._pacer.wait()
        return cover(frame, self.width, self.height)

    def close(self) -> None:
        self._capture.release()


# Opens a camera by index: cv2.VideoCapture, or a stand-in with its isOpened, set, get, read
# and release (tests).
CaptureFactory = Callable[[int], Any]
MJPEG = "MJPG"  # Motion-JPEG's FOURCC


@dataclasses.dataclass(frozen=True)
class CameraMode:
    """What a camera sends after being asked: size, frame rate (0: it does not say) and pixel
    format (a FOURCC such as "YUYV" or "MJPG"; "" where the backend does not say)."""

    width: int
    height: int
    fps: float
    fourcc: str

    def meets(self, width: int, height: int, fps: float) -> bool:
        """The size asked, at the rate asked or more (or a rate the camera does not report)."""
        return (self.width, self.height) == (width, height) and not self.slower_than(fps)

    def slower_than(self, fps: float) -> bool:
        """Fewer frames a second than ``fps`` (half a frame spared), as far as it says."""
        return 0 < self.fps < fps - 0.5

    def score(self, width: int, height: int, fps: float) -> tuple[float, int]:
        """Higher is nearer the ask: the frame rate first (up to the rate asked), then pixels."""
        rate = fps if self.fps <= 0 else min(self.fps, fps)
        return round(rate, 1), min(self.width * self.height, width * height)

    def __str__(self) -> str:
        rate = f" at {self.fps:g} fps" if self.fps > 0 else ""
        kind = f" ({self.fourcc})" if self.fourcc else ""
        return f"{self.width}x{self.height}{rate}{kind}"


def _fourcc(code: float) -> str:
    """A FOURCC as OpenCV reports it (a number) in letters; "" for none."""
    value = int(code)
    text = "".join(chr((value >> 8 * i) & 0xFF) for i in range(4))
    return text.strip() if value > 0 and text.isprintable() else ""


def _ask(capture: cv2.VideoCapture, width: int, height: int, fps: float) -> CameraMode:
    """Ask ``capture`` for that size and rate; what it sends then (drivers take the nearest)."""
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    capture.set(cv2.CAP_PROP_FPS, fps)
    return CameraMode(
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        float(capture.get(cv2.CAP_PROP_FPS)),
        _fourcc(capture.get(cv2.CAP_PROP_FOURCC)),
    )


def _open_camera(
    index: int, width: int, height: int, fps: float, factory: CaptureFactory
) -> tuple[cv2.VideoCapture, CameraMode] | None:
    """Camera ``index`` opened and asked for that size and rate (1280x720 at 30 fps by
    default), in the pixel format that gives them; None if it does not open.

    The camera's raw format (YUYV) is asked first: it costs the least CPU to convert. Many
    cameras send raw 720p at only 5-10 fps (USB bandwidth) and 30 fps only as Motion-JPEG,
    which OpenCV's Linux backend tries last: when the raw format falls short of the ask,
    MJPEG is asked for and kept if it comes nearer (frame rate first, then size)."""
    capture = factory(index)
    if not capture.isOpened():
        capture.release()
        return None
    ask = (width, height) if width else CAMERA_DEFAULT_SIZE
    wanted = (*ask, fps or CAMERA_DEFAULT_FPS)
    mode = _ask(capture, *wanted)
    if not mode.meets(*wanted) and mode.fourcc != MJPEG:
        raw = capture.get(cv2.CAP_PROP_FOURCC)
        if capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*MJPEG)):
            mjpeg = _ask(capture, *wanted)
            if mjpeg.fourcc == MJPEG and mjpeg.score(*wanted) > mode.score(*wanted):
                mode = mjpeg
            else:  # no nearer: back to the raw format
                capture.set(cv2.CAP_PROP_FOURCC, raw)
                mode = _ask(capture, *wanted)
    # Said as a warning where it falls short of the rate, or of a size the user asked for (a
    # camera smaller than vbg's default 720p is no news).
    if mode.slower_than(wanted[2]) or (width and (mode.width, mode.height) != ask):
        log.warning(
            "Camera %d sends %s, not the %dx%d at %g fps asked; vbg goes on with what it sends "
            "(ask for another size or rate with --width, --height and --fps).",
            index, mode, *wanted,
        )  # fmt: skip
    else:
        log.info("camera %d: %s", index, mode)
    return capture, mode


class CameraSource(_CaptureSource):
    """A physical camera opened by index with OpenCV; it paces itself. :attr:`mode` is what it
    sends (size, rate, pixel format: see :func:`_open_camera`).

    When it stops sending frames (unplugged), ``read`` raises :class:`SourceLost` and
    :meth:`reopen` tries to open it again (and asks for the mode again).
    """

    live = True

    def __init__(
        self,
        index: int,
        *,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        capture_factory: CaptureFactory = cv2.VideoCapture,
    ) -> None:
        self.description = f"camera {index}"
        self._index = index
        self._ask = (width, height, fps)
        self._factory = capture_factory
        opened = _open_camera(index, width, height, fps, capture_factory)
        if opened is None:
            raise SourceError(
                f"Camera {index} could not be opened. Check that it is plugged in and not used by "
                "another program, or pick another with --source (a camera index or a video file)."
            )
        capture, self.mode = opened
        first = _first_frame(capture)
        if first is None:
            raise SourceError(
                f"Camera {index} opened but sends no frames. Close other programs using it, "
                "or pick another with --source."
            )
        self._start(
            capture, first, width=width, height=height, fps=fps, default_fps=CAMERA_DEFAULT_FPS
        )

    def _read_raw(self) -> Frame | None:
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise SourceLost(f"Camera {self._index} stopped sending frames (unplugged?).")
        return frame

    def reopen(self) -> None:
        self._capture.release()
        opened = _open_camera(self._index, *self._ask, self._factory)
        first = _first_frame(opened[0]) if opened is not None else None
        if opened is None or first is None:
            raise SourceLost(f"Camera {self._index} is still gone.")
        (self._capture, self.mode), self._first = opened, first


class VideoFileSource(_CaptureSource):
    """A video file, read frame by frame; ``realtime`` paces it at ``fps``; ``loop`` repeats it."""

    def __init__(
        self,
        path: Path,
        *,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        loop: bool = False,
        realtime: bool = True,
    ) -> None:
        self.description = str(path)
        self.path = path
        self.loop = loop
        capture = cv2.VideoCapture(str(path))
        first = _first_frame(capture)
        if first is None:
            raise SourceError(
                f"Video '{path}' cannot be decoded. Use a video OpenCV can read (MP4, AVI, MKV)."
            )
        self._start(capture, first, width=width, height=height, fps=fps, default_fps=30.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self._pacer = _Pacer(self.fps) if realtime else None

    def _read_raw(self) -> Frame | None:
        ok, frame = self._capture.read()
        if not ok and self.loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        return frame if ok else None


class ImageSource(Source):
    """A still image shown as a camera would: the same frame at ``fps`` (once if not realtime)."""

    def __init__(
        self,
        path: Path,
        *,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        realtime: bool = True,
    ) -> None:
        self.description = str(path)
        try:
            image = read_image(path)
        except BackgroundError as exc:
            text = str(exc)
            if "too large" in text:  # read_image's pixel limit: its message says what to do
                raise SourceError(f"Source {text[0].lower()}{text[1:]}") from exc
            raise SourceError(
                f"Source image '{path}' cannot be decoded. Use a JPEG or PNG."
            ) from exc
        self.width, self.height = (
            (width, height) if width else fit_size(image.shape[1], image.shape[0], self._label)
        )
        self._image = cover(image, self.width, self.height)
        self.fps = fps or STILL_DEFAULT_FPS
        self.frame_count = None if realtime else 1
        self._pacer = _Pacer(self.fps) if realtime else None
        self._done = False

    def read(self) -> Frame | None:
        if self._pacer is None:
            if self._done:
                return None
            self._done = True
        else:
            self._pacer.wait()
        return self._image.copy()


def open_source(
    spec: str,
    *,
    width: int = 0,
    height: int = 0,
    fps: float = 0.0,
    loop: bool = False,
    realtime: bool = True,
) -> Source:
    """Open ``spec``: a camera index ("0"), a video file or an image file.

    Raises :class:`SourceError` with what to do when it cannot be opened.
    """
    if spec.isdigit():
        return CameraSource(int(spec), width=width, height=height, fps=fps)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(
            f"Source '{spec}' does not exist. Give a camera index (0, 1, ...) or a video or "
            "image file."
        )
    if path.is_dir():
        raise SourceError(f"Source '{spec}' is a folder. Give a camera index or a file.")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, width=width, height=height, fps=fps, realtime=realtime)
    return VideoFileSource(path, width=width, height=height, fps=fps, loop=loop, realtime=realtime)
