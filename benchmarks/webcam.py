"""A webcam stand-in for the live benchmarks: frames as OpenCV's camera backends give them,
from a webcam's raw YUYV or its MJPEG, without a camera (none where vbg is developed).

It imports from vbg only what every checkout the benchmarks compare has (``Source``, ``cover``,
``SourceError`` and the file sources' pacer), so that an older checkout's pipeline can read it
too (``half_cpu.py``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vbg.errors import SourceError
from vbg.images import cover
from vbg.sources.capture import Source, _Pacer


def to_yuyv(frame: np.ndarray) -> np.ndarray:
    """``frame`` (H x W x 3 BGR, even sides) as a webcam's YUYV: H x W x 2 uint8, each pair of
    pixels Y0 U Y1 V, in the BT.601 coefficients cv2.COLOR_YUV2BGR_YUYV reads (taken from
    OpenCV's I420, whose colour is halved down as well as across)."""
    height, width = frame.shape[:2]
    planes = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    quarter = height * width // 4
    u = planes[height * width : height * width + quarter].reshape(height // 2, width // 2)
    v = planes[height * width + quarter :].reshape(height // 2, width // 2)
    packed = np.empty((height, width, 2), np.uint8)
    packed[..., 0] = planes[: height * width].reshape(height, width)
    packed[:, 0::2, 1] = np.repeat(u, 2, axis=0)
    packed[:, 1::2, 1] = np.repeat(v, 2, axis=0)
    return packed


class WebcamStandIn(Source):
    """A webcam as OpenCV's camera backends give its frames, for the live figures: ``clip``'s
    first ``frames`` frames at ``width`` x ``height``, kept as the camera sends them (``fourcc``
    "YUYV": raw 4:2:2; "MJPG": JPEG at ``quality``) and turned into BGR on each read the way the
    backend does (cv2.cvtColor, cv2.imdecode), paced at ``fps``, looping. What the capture
    thread costs with a real camera, but for the kernel's handing over of the buffers; the
    clip's own decoding (H.264, and scaling to the size) is done once, before."""

    def __init__(
        self,
        clip: Path,
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        fourcc: str = "YUYV",
        frames: int = 150,
        quality: int = 85,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.description = f"{fourcc} webcam stand-in ({clip.name})"
        self.fourcc = fourcc
        capture = cv2.VideoCapture(str(clip))
        self._packed: list[np.ndarray] = []
        while len(self._packed) < frames:
            ok, frame = capture.read()
            if not ok:
                break
            frame = cover(frame, width, height)
            if fourcc == "YUYV":
                self._packed.append(to_yuyv(frame))
            else:
                self._packed.append(
                    cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
                )
        capture.release()
        if not self._packed:
            raise SourceError(f"Video '{clip}' gives no frame.")
        self._next = 0
        self._pacer = _Pacer(fps)  # the clip rows' clock (VideoFileSource): paced alike

    def read(self) -> np.ndarray:
        self._pacer.wait()
        packed = self._packed[self._next % len(self._packed)]
        self._next += 1
        if self.fourcc == "YUYV":
            return cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_YUYV)
        frame = cv2.imdecode(packed, cv2.IMREAD_COLOR)
        if frame is None:  # never: the JPEG was encoded here
            raise SourceError("A JPEG of the webcam stand-in did not decode.")
        return frame
