"""Sinks: where output frames go (the virtual camera, a recording).

Every sink has the same small surface: ``name``, ``write(frame)`` taking an output Frame
(H x W x 3 uint8 BGR) and ``close()``, safe to call twice. Sinks are context managers.
The pipeline gives each sink its own thread and queue. The preview window is one more sink
(:mod:`vbg.outputs.preview`): its ``write`` hands the frame to the main thread, which owns the
window, as OpenCV requires.
"""

from __future__ import annotations

import abc
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from vbg.errors import SinkError
from vbg.outputs.video import CRASH_SAFE_SUFFIXES as CRASH_SAFE_SUFFIXES  # for vbg run's note
from vbg.outputs.video import LIVE_PRESET, LIVE_THREADS, VideoWriter

Frame = np.ndarray  # H x W x 3 uint8, BGR

VIRTUAL_CAMERA_NAME = "vbg camera"
MODPROBE = (
    f'sudo modprobe v4l2loopback devices=1 video_nr=10 card_label="{VIRTUAL_CAMERA_NAME}" '
    "exclusive_caps=1"
)
CLOSE_TIMEOUT = 10.0  # seconds close waits for a write that still runs


class Sink(abc.ABC):
    """Base class of outputs. The contract: :meth:`write` takes one output frame at a time,
    :meth:`close` finishes the output once (a second call does nothing), and never while a
    :meth:`write` runs: both hold the sink's lock. A subclass implements :meth:`_write` and,
    where it holds something, :meth:`_close`; its ``__init__`` calls ``super().__init__()``.
    """

    name = "sink"
    # Whether the run ends when this output fails (a recording the user asked for: losing it
    # silently while the preview goes on is worse than stopping); else it is dropped with a
    # message while another output is left.
    vital = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def write(self, frame: Frame) -> None:
        """Output one frame: H x W x 3 uint8 BGR at the pipeline's output size.

        Raises :class:`SinkError` once the sink is closed."""
        with self._lock:
            if self._closed:
                raise SinkError(f"The {self.name} output is closed.")
            self._write(frame)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Finish and release the output, once a running write is done (waiting at most
        ``timeout`` seconds for it). Returns False when a write still ran (not closed)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            if not self._closed:
                self._closed = True
                self._close()
        finally:
            self._lock.release()
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    @abc.abstractmethod
    def _write(self, frame: Frame) -> None:
        """Output one frame (the lock is held)."""

    def _close(self) -> None:  # noqa: B027 - optional: most sinks hold something, some not
        """Finish and release the output (the lock is held; called once)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def find_loopback_device(sysfs: Path = Path("/sys")) -> str | None:
    """The /dev/videoN whose v4l2 name is "vbg camera", or None (Linux only)."""
    for name_file in sorted((sysfs / "class" / "video4linux").glob("video*/name")):
        try:
            if name_file.read_text().strip() == VIRTUAL_CAMERA_NAME:
                return f"/dev/{name_file.parent.name}"
        except OSError:
            continue
    return None


def setup_hint(system: str | None = None, sysfs: Path = Path("/sys")) -> str:
    """The one set-up step for the virtual camera on this platform."""
    system = system or platform.system()
    if system == "Linux":
        if not (sysfs / "module" / "v4l2loopback").exists():
            return (
                "v4l2loopback is not loaded. Install it (Debian/Ubuntu: sudo apt install "
                f"v4l2loopback-dkms) and run: {MODPROBE} ."
            )
        return f"no free v4l2loopback device named '{VIRTUAL_CAMERA_NAME}'. Run: {MODPROBE} ."
    if system == "Darwin":
        return (
            "install OBS Studio 30 or newer and start its virtual camera once (Start Virtual "
            "Camera), then quit OBS; calls then list 'OBS Virtual Camera'."
        )
    return (
        "install OBS Studio 30 or newer (it brings 'OBS Virtual Camera') or Unity Capture, "
        "then run vbg again."
    )


class VirtualCameraSink(Sink):
    """Frames to a virtual camera through pyvirtualcam (or anything with its Camera interface).

    ``camera_factory`` is called like ``pyvirtualcam.Camera(width, height, fps, fmt=...,
    device=...)`` and must return an object with ``send(frame)``, ``device`` and ``close()``.
    Frames are handed over as they are, in BGR (``fmt=PixelFormat.BGR``): pyvirtualcam converts
    them to the device's format in one step of its own, so vbg makes no RGB copy.
    """

    name = "virtual_cam"

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        camera_factory: Callable[..., Any] | None = None,
        device: str | None = None,
        system: str | None = None,
        sysfs: Path = Path("/sys"),
    ) -> None:
        super().__init__()
        system = system or platform.system()
        if device is None and system == "Linux":
            # The device labelled "vbg camera"; else pyvirtualcam takes any free loopback device.
            device = find_loopback_device(sysfs)
            no_module = not (sysfs / "module" / "v4l2loopback").exists()
            if device is None and no_module and camera_factory is None:
                raise SinkError(f"No virtual camera: {setup_hint(system, sysfs)}")
        import pyvirtualcam

        if camera_factory is None:
            camera_factory = pyvirtualcam.Camera
        try:
            self._camera = camera_factory(
                width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR, device=device
            )
        except Exception as exc:  # pyvirtualcam raises RuntimeError; backends may raise others
            raise SinkError(
                f"The virtual camera could not be opened ({exc}). "
                f"Fix: {setup_hint(system, sysfs)} Or run with --no-virtual-cam."
            ) from exc
        self.device = str(self._camera.device)
        self.width, self.height = width, height

    def _write(self, frame: Frame) -> None:
        self._camera.send(np.ascontiguousarray(frame))

    def _close(self) -> None:
        self._camera.close()


class RecordingSink(Sink):
    """Frames to a video file at a constant frame rate, finalised by ``close``: H.264 in
    Matroska (.mkv, what the record key writes; it plays up to about the last second written
    even if vbg is killed), MP4, M4V or MOV (playable once finalised). See
    :mod:`vbg.outputs.video`; the encoder runs x264's :data:`~vbg.outputs.video.LIVE_PRESET` on
    :data:`~vbg.outputs.video.LIVE_THREADS` threads, leaving the model the rest of the CPU.

    ``overwrite``: replace an existing file (else :class:`~vbg.errors.ConfigError`); ``vital``:
    the run ends when the recording fails (a full disk), the file finished first. A write that
    fails raises :class:`SinkError` saying how many frames the file holds.
    """

    name = "record"

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        *,
        overwrite: bool = False,
        vital: bool = True,
    ) -> None:
        super().__init__()
        self.path = path
        self.vital = vital
        self._writer = VideoWriter(
            path,
            width,
            height,
            rate=fps,
            preset=LIVE_PRESET,
            threads=LIVE_THREADS,
            overwrite=overwrite,
        )
        self.size = (width, height)

    @property
    def frames_written(self) -> int:
        """The frames in the file: those written so far while it is open; once it is closed
        (or failed), those a player finds in it."""
        saved = self._writer.frames_saved
        return self._writer.frames_written if saved is None else saved

    def _write(self, frame: Frame) -> None:
        self._writer.write(frame)

    def _close(self) -> None:
        self._writer.close()
