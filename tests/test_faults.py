"""Faults the live pipeline rides out: a camera that goes away and comes back, a model that fails
on a GPU, a background that breaks while it is shown."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MemorySink, data_path
from vbg import pipeline as pipeline_module
from vbg.commands.run import Controls
from vbg.compositing.backgrounds import ColorBackground, ImageBackground, PassThrough
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.errors import BackgroundError, SourceLost
from vbg.pipeline import Pipeline
from vbg.segmentation.segmenter import Segmenter, load_segmenter
from vbg.sources.capture import Source, VideoFileSource

CLIP = ("videos", "volcomix_thoughtful-35590.mp4")  # 640x360, a man sitting outdoors


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
        self.reopen_times: list[float] = []
        self.lost_at = 0.0

    def read(self) -> np.ndarray | None:
        if self._left == 0:
            self.lost_at = self.lost_at or time.monotonic()
            raise SourceLost("Camera 0 stopped sending frames (unplugged?).")
        self._left -= 1
        return self._inner.read()

    def reopen(self) -> None:
        self.reopen_times.append(time.monotonic())
        if len(self.reopen_times) < self._back_on:
            raise SourceLost("Camera 0 is still gone.")
        self._inner.close()
        self._inner = VideoFileSource(self._path, fps=25.0, loop=True)
        self._left = -1  # never again

    def close(self) -> None:
        self._inner.close()


def _segmenter(fcn_weights: Path) -> Segmenter:
    return load_segmenter("fcn_resnet50", weights=fcn_weights, device="cpu", inference_size=48)


def _messages(pipeline: Pipeline) -> list[str]:
    texts = []
    while (text := pipeline.messages.get(timeout=0)) is not None:
        texts.append(text)
    return texts


def test_an_unplugged_camera_shows_the_last_frame_then_comes_back(
    fcn_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "RECONNECT_FIRST", 0.2)
    camera = _UnpluggedCamera(data_path(*CLIP), frames=20, back_on=3)
    sink = MemorySink()
    pipeline = Pipeline(camera, _segmenter(fcn_weights), Compositor(PassThrough()), [sink],
                        max_frames=110)  # fmt: skip
    pipeline.start()
    assert pipeline.wait(60.0)
    pipeline.stop()  # no error: the run went on
    assert len(sink.frames) == 110
    # Tries to reopen after 0.2, 0.4 and 0.8 s: it waits longer after each failure.
    gaps = np.diff([camera.lost_at, *camera.reopen_times])
    assert len(gaps) == 3 and gaps[0] >= 0.19 and gaps[1] >= 0.39 and gaps[2] >= 0.79
    # While it was gone the output kept coming: the last good frame again, with the notice (a
    # darker strip along the bottom), for the 1.4 s it was gone (25 fps, give or take).
    same = [np.array_equal(a[:300], b[:300]) for a, b in itertools.pairwise(sink.frames)]
    runs, start = [], 0
    for i, equal in enumerate([*same, False]):
        if not equal:
            runs.append((start, i + 1))
            start = i + 1
    first, end = max(runs, key=lambda run: run[1] - run[0])
    last_good, held = sink.frames[first], sink.frames[first + 1 : end]
    assert 15 <= first <= 20 and len(held) >= 25
    assert all(f[-10:].mean() < last_good[-10:].mean() * 0.6 for f in held)
    # Then the picture came back by itself: new frames, without the notice.
    after = sink.frames[end:]
    assert len(after) >= 10
    assert all(abs(float(f[-10:].mean()) - float(last_good[-10:].mean())) < 40 for f in after)
    texts = _messages(pipeline)
    assert any("Reconnecting" in t for t in texts) and any("camera 0 is back" in t for t in texts)
    assert pipeline.stats.get("source_lost") == 1


def test_quitting_while_the_camera_is_gone_is_a_clean_stop(fcn_weights: Path) -> None:
    camera = _UnpluggedCamera(data_path(*CLIP), frames=5, back_on=1000)
    sink = MemorySink()
    pipeline = Pipeline(camera, _segmenter(fcn_weights), Compositor(PassThrough()), [sink])
    pipeline.start()
    while len(sink.frames) < 30:  # 5 real frames, then repeats of the last one
        time.sleep(0.05)
    pipeline.stop()  # raises nothing
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vbg-")]


class _FailingGpuSegmenter(Segmenter):
    """A segmenter on "cuda" whose model runs out of memory, as a real one does on a small GPU."""

    name = "fcn_resnet50"
    device = torch.device("cuda")
    inference_size = 48

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return 85, 48

    def predict(self, frame: np.ndarray) -> np.ndarray:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_model_failing_on_the_gpu_goes_on_on_the_cpu(fcn_weights: Path) -> None:
    source = VideoFileSource(data_path(*CLIP), fps=25.0)
    sink = MemorySink()
    compositor = Compositor(ColorBackground((0, 255, 0)))
    pipeline = Pipeline(source, _FailingGpuSegmenter(), compositor, [sink], max_frames=40,
                        fallback=lambda: _segmenter(fcn_weights))  # fmt: skip
    controls = Controls(compositor, pipeline, RunConfig(), size=(640, 360), fps=25.0,
                        recording=None)  # fmt: skip
    pipeline.start()
    assert pipeline.wait(60.0)
    pipeline.stop()
    assert len(sink.frames) == 40
    assert pipeline.segmenter.device.type == "cpu" and pipeline.stats.get("masks") >= 1
    assert pipeline.stats.info["device"] == "cpu (after cuda failed)"
    controls.show_messages()  # the overlay says so (and the log)
    status = "\n".join(controls.status_lines())
    assert "fcn_resnet50 on cpu" in status
    assert "The model failed on cuda (CUDA out of memory." in status
    assert "running it on the CPU from now on" in status


def test_a_model_failing_on_the_cpu_ends_the_run_with_its_error(fcn_weights: Path) -> None:
    failing = _FailingGpuSegmenter()
    failing.device = torch.device("cpu")  # nothing to fall back to
    source = VideoFileSource(data_path(*CLIP), fps=25.0)
    pipeline = Pipeline(source, failing, Compositor(PassThrough()), [MemorySink()],
                        fallback=lambda: _segmenter(fcn_weights))  # fmt: skip
    pipeline.start()
    assert pipeline.wait(30.0)
    with pytest.raises(torch.OutOfMemoryError):
        pipeline.stop()


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


def test_a_background_that_breaks_is_replaced_by_the_one_before() -> None:
    frame = np.full((90, 160, 3), 128, np.uint8)
    mask = np.zeros((90, 160), np.float32)  # all room: the output is the background
    compositor = Compositor(ColorBackground((255, 0, 0)))
    picture = data_path("backgrounds", "mate_Dune.jpg")
    compositor.set_background(_BreakingBackground(picture, good=2))
    first = compositor.composite(frame, mask, 0.0)
    assert not np.array_equal(first, np.full_like(frame, (255, 0, 0)))  # the picture
    compositor.composite(frame, mask, 0.1)
    broken = compositor.composite(frame, mask, 0.2)  # it breaks: the blue one is back
    assert np.array_equal(broken, np.full_like(frame, (255, 0, 0)))
    assert compositor.background.name == "color:#0000FF"
    (notice,) = compositor.take_notices()
    assert "stopped decoding" in notice and "Showing color:#0000FF instead" in notice
    assert compositor.take_notices() == []
