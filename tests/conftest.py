"""Shared fixtures: test data, an untrained model's weights, and real test doubles.

Two kinds of data: the small committed set in tests/fixtures/data (``fixture_path``; made by
tools/make_test_fixtures.py, always there) and the full set in ../shared/data (``data_path``; a
test that needs it is skipped when it is absent, except under ``CI=true``, where that is a failure).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import pyvirtualcam
import torch
from torchvision.models import segmentation

from vbg.outputs.sinks import Sink
from vbg.segmentation.segmenter import Segmenter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``, as GitHub Actions and most CI services set)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def data_path(*parts: str) -> Path:
    """A file or folder under ../shared/data (the full data set, not committed).

    When it is absent the test is skipped with the reason; with ``CI=true`` the test fails instead,
    so that a CI run without the data cannot pass by skipping everything that needs it.
    """
    path = DATA.joinpath(*parts)
    if not path.exists():
        reason = f"test data {path} is absent (shared/ must sit beside the checkout)"
        if in_ci():
            pytest.fail(f"{reason}; CI=true, so this fails instead of skipping", pytrace=False)
        pytest.skip(reason)
    return path


def fixture_path(*parts: str) -> Path:
    """A file or folder under tests/fixtures/data (committed; see its README.md). Never skips.

    Layout: ``clip.mp4`` (75 frames, 320x180, 29.97 fps, a man sitting outdoors),
    ``photos/{images,masks}`` (4 photos, 320 px wide, exact 0/255 person masks),
    ``video/{frames,masks}`` (24 frames, 256x144, exact masks; the ``vbg eval --data`` layout),
    ``backgrounds/`` (2 pictures, 480x270).
    """
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"test fixture {path} is missing: it is committed in git "
            "(made by tools/make_test_fixtures.py)",
            pytrace=False,
        )
    return path


class MemorySink(Sink):
    """A real sink that keeps a copy of every frame it is sent (``closed`` says whether it was
    closed)."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[np.ndarray] = []

    def _write(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())


class StandInSegmenter(Segmenter):
    """A real segmenter without a network, fast and the same on every machine: the person is an
    upright ellipse in the middle of the frame (at the model's 64 x 36 resolution), or, with
    ``follow_brightness``, the pixels brighter than the frame's mean. ``hold`` (an Event) makes
    :meth:`predict` wait until it is set, like a model that is much slower than the camera;
    ``calls`` counts the frames it was given."""

    name = "stand-in"
    device = torch.device("cpu")
    inference_size = 36

    def __init__(
        self, *, follow_brightness: bool = False, hold: threading.Event | None = None
    ) -> None:
        self.follow_brightness = follow_brightness
        self.hold = hold
        self.calls = 0

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return 64, 36

    def predict(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.hold is not None:
            self.hold.wait()
        if self.follow_brightness:
            small = cv2.cvtColor(cv2.resize(frame, (64, 36), interpolation=cv2.INTER_AREA),
                                 cv2.COLOR_BGR2GRAY).astype(np.float32)  # fmt: skip
            return (small > small.mean()).astype(np.float32)
        mask = np.zeros((36, 64), np.float32)
        cv2.ellipse(mask, (32, 22), (12, 16), 0, 0, 360, 1.0, -1)
        return mask


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


@pytest.fixture(autouse=True)
def _vbg_logger_as_it_was() -> Iterator[None]:
    """vbg's logger back to its state before the test: ``main()`` sets up a terminal handler and
    stops propagation, which would hide vbg's messages from later tests' ``caplog``."""
    logger = logging.getLogger("vbg")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


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


@pytest.fixture(scope="session")
def fast_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict of an untrained lraspp_mobilenet_v3_large (13 MB, quick to load and run): for
    tests that start ``python -m vbg``, pass ``--model lraspp_mobilenet_v3_large --weights``."""
    torch.manual_seed(0)
    model = segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21
    )
    path = tmp_path_factory.mktemp("weights") / "lraspp_untrained.pth"
    torch.save(model.state_dict(), path)
    return path


class StandInCamera:
    """A real implementation of pyvirtualcam.Camera's interface that keeps what it is sent.

    Constructed like ``pyvirtualcam.Camera(width, height, fps, fmt=..., device=...)`` (RGB or
    BGR); ``send`` checks the frame as pyvirtualcam does (H x W x 3 uint8) and keeps a copy of
    what the call sees, as RGB.
    """

    instances: list[StandInCamera] = []

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        fmt: pyvirtualcam.PixelFormat = pyvirtualcam.PixelFormat.RGB,
        device: Any = None,
    ) -> None:
        if fmt not in (pyvirtualcam.PixelFormat.RGB, pyvirtualcam.PixelFormat.BGR):
            raise ValueError(f"the stand-in takes RGB or BGR, not {fmt}")
        self.width, self.height, self.fps, self.fmt = width, height, fps, fmt
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
        bgr = self.fmt == pyvirtualcam.PixelFormat.BGR
        self.frames.append(frame[..., ::-1].copy() if bgr else frame.copy())

    def sleep_until_next_frame(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def stand_in_camera() -> type[StandInCamera]:
    StandInCamera.instances.clear()
    return StandInCamera


MEDIAPIPE = ("mediapipe_selfie", "mediapipe_selfie_landscape")


@pytest.fixture(autouse=True, scope="session")
def _empty_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read or write the user's vbg cache (models, measured speeds): it starts
    empty; ``model_cache`` fills one for the tests that run the real MediaPipe models."""
    previous = os.environ.get("VBG_CACHE_DIR")
    os.environ["VBG_CACHE_DIR"] = str(tmp_path_factory.mktemp("vbg-empty-cache"))
    yield
    if previous is None:
        del os.environ["VBG_CACHE_DIR"]
    else:
        os.environ["VBG_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Both MediaPipe models, fetched with the real command into a fresh cache folder."""
    cache = tmp_path_factory.mktemp("vbg-cache")
    env = {**os.environ, "VBG_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-m", "vbg", "models", "fetch", *MEDIAPIPE],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    previous = os.environ.get("VBG_CACHE_DIR")
    os.environ["VBG_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["VBG_CACHE_DIR"]
    else:
        os.environ["VBG_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that would download a model in-process fails instead (a model the default run
    fetches on first use, say): tests take models from ``model_cache`` or stand-ins."""
    from vbg.segmentation import models

    def refuse(info: models.ModelInfo) -> bytes:
        raise LookupError(f"tests do not download {info.name}: use the model_cache fixture")

    for source in ("storage", "wheel"):
        monkeypatch.setitem(models._SOURCES, source, refuse)
