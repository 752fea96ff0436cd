"""Shared fixtures: the real data under ../shared/data and an untrained model's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torchvision.models import segmentation

from vbg.sinks import Sink

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """A file under ../shared/data; skips the test with a reason when the data is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is absent (shared/ must sit beside the checkout)")
    return path


class MemorySink(Sink):
    """A real sink that keeps a copy of every frame it is sent, and whether it was closed."""

    name = "memory"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.closed = False

    def write(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, decoded by OpenCV's FFmpeg (H x W x 3 uint8 BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="session")
def fcn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict saved from an untrained fcn_resnet50 shaped like the pretrained one."""
    torch.manual_seed(0)
    model = segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    )
    path = tmp_path_factory.mktemp("weights") / "fcn_resnet50_untrained.pth"
    torch.save(model.state_dict(), path)
    return path


class StandInCamera:
    """A real implementation of pyvirtualcam.Camera's interface that keeps what it is sent.

    Constructed like ``pyvirtualcam.Camera(width, height, fps, device=...)``; ``send`` checks the
    frame as pyvirtualcam does (H x W x 3 uint8 RGB) and keeps a copy.
    """

    instances: list[StandInCamera] = []

    def __init__(self, width: int, height: int, fps: float, *, device: Any = None) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.device = device or "/dev/video10"
        self.frames: list[np.ndarray] = []
        self.closed = 0
        StandInCamera.instances.append(self)

    @property
    def frames_sent(self) -> int:
        return len(self.frames)

    def send(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8:
            raise TypeError(f"unexpected frame dtype: {frame.dtype} != uint8")
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"unexpected frame shape: {frame.shape}")
        self.frames.append(frame.copy())

    def sleep_until_next_frame(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def stand_in_camera() -> type[StandInCamera]:
    StandInCamera.instances.clear()
    return StandInCamera
