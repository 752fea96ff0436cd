"""Faults the live pipeline rides out: a camera that goes away and comes back, a model that fails
on a GPU, a background that breaks while it is shown. Times are injected where they matter, and
the clip is the committed fixture, so nothing here depends on the machine's speed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MemorySink, StandInSegmenter, fixture_path
from vbg.commands.run import Controls
from vbg.compositing.backgrounds import ColorBackground, ImageBackground, PassThrough
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.errors import BackgroundError, ModelError, SourceLost
from vbg.pipeline import Pipeline
from vbg.processor import FrameProcessor
from vbg.segmentation.fallback import FallbackSegmenter
from vbg.segmentation.segmenter import Segmenter
from vbg.sources.capture import Source, VideoFileSource
from vbg.sources.reconnect import LOST_NOTICE, ReconnectingSource


class _UnpluggedCamera(Source):
    """A camera made of a real video file that is unplugged after ``frames`` frames and comes
    back on the ``back_on``-th try to reopen it, like a USB camera pulled out and put back."""

    live = True

    def __init__(self, path: Path, frames: int, back_on: int) -> None:
        self._path = path
        self._inner = VideoFileSource(path, fps=25.0, loop=True)
        self.width, self.height, self.fps = self._inner.width, self._inner.height, 25.0
        self.description = "camera 0"
        self._left, self._back_on = frames, back_on
        self.tries = 0

    def read(self) -> np.ndarray | None:
        if self._left == 0:
            raise SourceLost("Camera 0 stopped sending frames (unplugged?).")
        self._left -= 1
        return self._inner.read()

    def reopen(self) -> None:
        self.tries += 1
        if self.tries < self._back_on:
            raise SourceLost("Camera 0 is still gone.")
        self._inner.close()
        self._inner = VideoFileSource(self._path, fps=25.0, loop=True)
        self._left = -1  # never again

    def close(self) -> None:
        self._inner.close()


class _Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_unplugged_camera_gives_the_last_frame_and_is_reopened_with_growing_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = _UnpluggedCamera(fixture_path("clip.mp4"), frames=20, back_on=5)
    clock = _Clock()
    source = ReconnectingSource(camera, clock=clock, sleep=clock.sleep)
    frames = [source.read() for _ in range(20)]
    assert source.notice is None
    lost_at = clock.now
    held = []
    while True:
        frame = source.read()
        if source.notice is None:
            break
        held.append(frame)
        assert source.notice == LOST_NOTICE
    # The waits between tries to reopen it: 0.5, 1, 2, 4, 5 s (each twice the last, at most 5;
    # a try comes with the next frame after its time, so up to 1/25 s later).
    gaps = np.diff([lost_at, *source.tries])
    assert gaps == pytest.approx([0.5, 1.0, 2.0, 4.0, 5.0], abs=0.05)
    # Meanwhile the last good frame again and again, at the camera's rate (25 fps, 12.5 s).
    assert all(frame is frames[-1] for frame in held)
    assert len(held) == pytest.approx(12.5 * 25, abs=3)
    # Then the camera's frames again, by themselves.
    assert frame is not None and not np.array_equal(frame, frames[-1])
    assert source.losses == 1
    assert "Camera 0 stopped sending frames (unplugged?). Reconnecting..." in caplog.text
    assert "camera 0 is back." in caplog.text


def test_a_camera_lost_before_its_first_frame_is_an_error() -> None:
    camera = _UnpluggedCamera(fixture_path("clip.mp4"), frames=0, back_on=1)
    with pytest.raises(SourceLost, match="unplugged"):
        ReconnectingSource(camera).read()


def test_the_output_shows_the_notice_while_the_camera_is_gone_then_the_picture_again() -> None:
    camera = _UnpluggedCamera(fixture_path("clip.mp4"), frames=20, back_on=3)
    source = ReconnectingSource(camera, first_wait=0.02, max_wait=0.05)
    processor = FrameProcessor(StandInSegmenter(), Compositor(PassThrough()))
    sink = MemorySink()
    pipeline = Pipeline(source, processor, [sink], max_frames=60)
    pipeline.start()
    assert pipeline.wait(60.0)
    pipeline.stop()  # no error: the run went on
    assert len(sink.frames) == 60 and pipeline.stats.get("source_lost") == 1
    # A frame with the notice has a darkened strip along the bottom; the others do not.
    strip = [float(frame[-10:].mean()) for frame in sink.frames]
    normal = float(np.median(strip[:15]))
    noticed = [i for i, value in enumerate(strip) if value < normal * 0.6]
    assert noticed, "no frame carried the notice"
    assert noticed[0] >= 15 and noticed[-1] < 59  # after the real frames, and then it was over
    assert all(abs(value - normal) < 40 for value in strip[noticed[-1] + 1 :])


def test_quitting_while_the_camera_is_gone_is_a_clean_stop() -> None:
    camera = _UnpluggedCamera(fixture_path("clip.mp4"), frames=5, back_on=1000)
    source = ReconnectingSource(camera, first_wait=0.01, max_wait=0.01)
    sink = MemorySink()
    processor = FrameProcessor(StandInSegmenter(), Compositor(PassThrough()))
    pipeline = Pipeline(source, processor, [sink])
    pipeline.start()
    deadline = time.monotonic() + 60
    while pipeline.stats.get("frames_out") < 30 and time.monotonic() < deadline:
        time.sleep(0.02)  # 5 real frames, then repeats of the last one
    pipeline.stop()  # raises nothing
    assert len(sink.frames) >= 30 and camera.tries >= 1
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vbg-")]


class _FailingGpuSegmenter(Segmenter):
    """A segmenter on "cuda" whose model runs out of memory, as a real one does on a small GPU."""

    name = "fcn_resnet50"
    inference_size = 36

    def __init__(self, device: str = "cuda") -> None:
        self.device = torch.device(device)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return 64, 36

    def predict(self, frame: np.ndarray) -> np.ndarray:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_model_failing_on_the_gpu_goes_on_on_the_cpu() -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), fps=25.0)
    sink = MemorySink()
    compositor = Compositor(ColorBackground((0, 255, 0)))
    segmenter = FallbackSegmenter(_FailingGpuSegmenter(), StandInSegmenter)
    pipeline = Pipeline(source, FrameProcessor(segmenter, compositor), [sink], max_frames=40)
    controls = Controls(compositor, pipeline, RunConfig(), size=(320, 180), fps=25.0,
                        recording=None)  # fmt: skip
    pipeline.start()
    assert pipeline.wait(60.0)
    pipeline.stop()
    controls.close()
    assert len(sink.frames) == 40
    assert segmenter.device.type == "cpu" and pipeline.stats.get("masks") >= 1
    assert segmenter.fell_back == "cuda failed: CUDA out of memory. Tried to allocate 2.00 GiB"
    controls.show_messages()  # the overlay says so (and the log)
    status = "\n".join(controls.status_lines())
    assert "stand-in on cpu" in status
    assert "The model failed on cuda (CUDA out of memory." in status
    assert "running it on the CPU from now on" in status


def test_a_model_failing_on_the_cpu_ends_the_run_with_one_clear_error() -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), fps=25.0)
    segmenter = FallbackSegmenter(_FailingGpuSegmenter("cpu"), StandInSegmenter)
    processor = FrameProcessor(segmenter, Compositor(PassThrough()))
    pipeline = Pipeline(source, processor, [MemorySink()])
    pipeline.start()
    assert pipeline.wait(30.0)
    with pytest.raises(ModelError, match=r"fcn_resnet50 failed on cpu \(CUDA out of memory") as e:
        pipeline.stop()
    assert isinstance(e.value.__cause__, torch.OutOfMemoryError)  # chained, for -v


class _BreakingBackground(ImageBackground):
    """A real image background whose file breaks after ``good`` frames (a video that stops
    decoding reads the same way)."""

    def __init__(self, path: Path, good: int) -> None:
        super().__init__(path)
        self._left = good

    def render(self, frame: np.ndarray, t: float, mask: np.ndarray | None = None) -> np.ndarray:
        self._left -= 1
        if self._left < 0:
            raise BackgroundError(f"Background video '{self.path}' stopped decoding.")
        rendered = super().render(frame, t, mask)
        assert rendered is not None
        return rendered


def test_a_background_that_breaks_is_replaced_by_the_one_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = np.full((90, 160, 3), 128, np.uint8)
    mask = np.zeros((90, 160), np.float32)  # all room: the output is the background
    compositor = Compositor(ColorBackground((255, 0, 0)))
    picture = next(fixture_path("backgrounds").iterdir())
    compositor.set_background(_BreakingBackground(picture, good=2))
    first = compositor.composite(frame, mask, 0.0)
    assert not np.array_equal(first, np.full_like(frame, (255, 0, 0)))  # the picture
    compositor.composite(frame, mask, 0.1)
    broken = compositor.composite(frame, mask, 0.2)  # it breaks: the blue one is back
    assert np.array_equal(broken, np.full_like(frame, (255, 0, 0)))
    assert compositor.background.name == "color:#0000FF"
    assert "stopped decoding. Showing color:#0000FF instead." in caplog.text
