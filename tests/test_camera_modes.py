"""A camera is asked for its size and rate in the pixel format that gives them (issue 14): raw
frames where the camera sends the rate asked raw, Motion-JPEG where only that keeps up, as a
user's 720p webcam at 30 fps needs. Tested against a stand-in for OpenCV's capture that keeps a
camera's format table as a UVC driver does (no camera here)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from vbg.errors import SourceLost
from vbg.sources.capture import CameraMode, CameraSource

# A common 720p webcam (Logitech C615's table): raw 720p at 10 fps, 30 fps only as MJPEG.
USB_WEBCAM = {
    "YUYV": {(640, 480): 30.0, (1280, 720): 10.0},
    "MJPG": {(640, 480): 30.0, (1280, 720): 30.0},
}


def _letters(code: float) -> str:
    return "".join(chr((int(code) >> 8 * i) & 0xFF) for i in range(4))


class StandInCapture:
    """A camera as OpenCV's capture shows it: ``formats`` maps each pixel format to its sizes
    and their highest rate. Like a UVC driver it takes the nearest size it has and the rate
    asked up to that size's highest; ``fourcc_settable`` False is a backend that ignores the
    format asked (as some Windows and macOS ones do). ``frames``: how many it sends before it
    is unplugged (None: no end)."""

    def __init__(
        self,
        formats: dict[str, dict[tuple[int, int], float]],
        *,
        fourcc_settable: bool = True,
        frames: int | None = None,
    ) -> None:
        self.formats = formats
        self.fourcc = next(iter(formats))
        self.fourcc_settable = fourcc_settable
        self.formats_asked: list[str] = []
        self.frames = frames
        self._asked = [640, 480, 30.0]
        self._fit()

    def _fit(self) -> None:
        sizes = self.formats[self.fourcc]
        width, height, rate = self._asked
        self.size = min(sizes, key=lambda s: abs(s[0] - width) + abs(s[1] - height))
        self.fps = min(rate, sizes[self.size])

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_FOURCC:
            name = _letters(value)
            self.formats_asked.append(name)
            if not self.fourcc_settable or name not in self.formats:
                return False
            self.fourcc = name
        elif prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS):
            slot = (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS)
            self._asked[slot.index(prop)] = value
        self._fit()
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FOURCC:
            return float(cv2.VideoWriter.fourcc(*self.fourcc))
        values = {
            cv2.CAP_PROP_FRAME_WIDTH: self.size[0],
            cv2.CAP_PROP_FRAME_HEIGHT: self.size[1],
            cv2.CAP_PROP_FPS: self.fps,
        }
        return float(values.get(prop, 0.0))

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames is not None:
            if self.frames == 0:
                return False, None
            self.frames -= 1
        return True, np.zeros((self.size[1], self.size[0], 3), np.uint8)

    def release(self) -> None:
        pass


def _open(camera: StandInCapture, width: int = 0, height: int = 0) -> CameraSource:
    return CameraSource(0, width=width, height=height, capture_factory=lambda index: camera)


def test_a_webcam_that_keeps_up_only_in_mjpeg_sends_mjpeg(caplog: pytest.LogCaptureFixture) -> None:
    camera = StandInCapture(USB_WEBCAM)
    with caplog.at_level(logging.INFO, logger="vbg"), _open(camera) as source:
        # 1280x720 at 30 fps, not the 10 fps the raw format gives at that size.
        assert source.mode == CameraMode(1280, 720, 30.0, "MJPG")
        assert source.fps == 30.0 and (source.width, source.height) == (1280, 720)
        frame = source.read()
        assert frame is not None and frame.shape == (720, 1280, 3)
    assert "camera 0: 1280x720 at 30 fps (MJPG)" in caplog.text
    assert "not the" not in caplog.text


def test_a_camera_that_sends_the_ask_raw_stays_raw() -> None:
    # Raw frames cost the least CPU to convert: MJPEG is not even asked for.
    camera = StandInCapture({"YUYV": {(1280, 720): 30.0}, "MJPG": {(1280, 720): 30.0}})
    with _open(camera) as source:
        assert source.mode == CameraMode(1280, 720, 30.0, "YUYV")
    assert camera.formats_asked == []
    small = StandInCapture(USB_WEBCAM)  # 640x480 at 30 fps it sends raw
    with _open(small, width=640, height=480) as source:
        assert source.mode == CameraMode(640, 480, 30.0, "YUYV")
    assert small.formats_asked == []


def test_where_mjpeg_comes_no_nearer_the_raw_format_stays_and_the_user_is_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A VGA camera: 640x480 at most, in both formats. Not asked for a size, it sends its own,
    # raw, and that is no news; asked for 720p, it says what it sends instead.
    vga = {"YUYV": {(640, 480): 30.0}, "MJPG": {(640, 480): 30.0}}
    camera = StandInCapture(vga)
    with caplog.at_level(logging.INFO, logger="vbg"), _open(camera) as source:
        assert source.mode == CameraMode(640, 480, 30.0, "YUYV") and camera.fourcc == "YUYV"
        frame = source.read()
        assert frame is not None and frame.shape == (480, 640, 3)  # no size asked: its own
    assert camera.formats_asked == ["MJPG", "YUYV"]
    assert "camera 0: 640x480 at 30 fps (YUYV)" in caplog.text and "WARNING" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vbg"), _open(StandInCapture(vga), 1280, 720):
        pass
    assert (
        "Camera 0 sends 640x480 at 30 fps (YUYV), not the 1280x720 at 30 fps asked; vbg goes on "
        "with what it sends (ask for another size or rate with --width, --height and --fps)."
    ) in caplog.text
    # A backend that ignores the format asked: the camera's 10 fps, said as much.
    caplog.clear()
    stuck = StandInCapture(USB_WEBCAM, fourcc_settable=False)
    with caplog.at_level(logging.INFO, logger="vbg"), _open(stuck) as source:
        assert source.mode == CameraMode(1280, 720, 10.0, "YUYV") and source.fps == 10.0
    assert "Camera 0 sends 1280x720 at 10 fps (YUYV), not the 1280x720 at 30 fps" in caplog.text


def test_a_camera_plugged_in_again_is_asked_again() -> None:
    cameras = [StandInCapture(USB_WEBCAM, frames=2), StandInCapture(USB_WEBCAM)]
    source = CameraSource(0, capture_factory=lambda index: cameras.pop(0))
    with source:
        assert source.read() is not None  # the frame read when it opened
        assert source.read() is not None
        with pytest.raises(SourceLost, match="Camera 0 stopped sending frames"):
            source.read()
        source.reopen()
        assert source.mode == CameraMode(1280, 720, 30.0, "MJPG")
        frame = source.read()
        assert frame is not None and frame.shape == (720, 1280, 3)
