"""Sync: a frame held until the model is done with it, so it is shown with its own mask.

The policy is pure and tested with the run times it is given. The pipeline's tests use the
committed clip and stand-in models, with a camera that sends its next frame only once the output
has the last one (one frame in flight), and a bound far longer than any run: what they check
(every frame with its own mask; no frame waits for a mask that will not come) does not depend on
how fast the machine is or how busy its CPU.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import MemorySink, StandInSegmenter, decode_video, fixture_path
from vbg.compositing.backgrounds import BlurBackground
from vbg.compositing.compositor import Compositor
from vbg.errors import ModelError
from vbg.pipeline import SYNC_MAX_WAIT, Pipeline, SyncPolicy
from vbg.processor import FrameProcessor
from vbg.segmentation.segmenter import Segmenter
from vbg.segmentation.still import StillSceneGate
from vbg.sources.capture import Source

LONG = 600.0  # seconds: a bound no run reaches, however busy the machine


# -- the policy ------------------------------------------------------------------------------


def test_off_never_holds_a_frame_and_on_always_within_the_bound() -> None:
    off, on = SyncPolicy("off", 30.0), SyncPolicy("on", 30.0)
    assert off.wait_limit() == 0.0
    assert on.wait_limit() == pytest.approx(1 / 30)  # one frame interval, under 50 ms at 30 fps
    for policy in (off, on):
        policy.observe(0.005)
    assert off.wait_limit() == 0.0 and on.wait_limit() == pytest.approx(1 / 30)
    slow = SyncPolicy("on", 10.0)
    slow.observe(0.5)  # a model far slower than the camera: on still holds, never over 50 ms
    assert slow.wait_limit() == SYNC_MAX_WAIT == 0.05


def test_auto_holds_frames_while_the_model_keeps_up() -> None:
    policy = SyncPolicy("auto", 30.0)
    assert policy.wait_limit() == 0.0  # before the first mask nothing is known: not held
    policy.observe(0.008)
    assert policy.keeps_up and policy.wait_limit() == pytest.approx(0.016)  # two runs' time
    for _ in range(5):
        policy.observe(0.020)  # 20 ms of a 33 ms frame interval: still keeps up
    assert policy.wait_limit() == pytest.approx(1 / 30)  # never past the next frame
    policy.observe(0.400)  # one slow run (the machine was busy) does not turn it off
    assert policy.keeps_up
    for _ in range(10):
        policy.observe(0.030)  # 30 ms: over 3/4 of the interval, falling behind
    assert not policy.keeps_up and policy.wait_limit() == 0.0


def test_auto_never_holds_a_frame_over_the_cap() -> None:
    policy = SyncPolicy("auto", 10.0)  # 100 ms between frames, a 40 ms model: it keeps up
    policy.observe(0.040)
    assert policy.keeps_up and policy.wait_limit() == SYNC_MAX_WAIT


def test_a_mode_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, on, off"):
        SyncPolicy("always", 30.0)
    with pytest.raises(ValueError, match="fps"):
        SyncPolicy("auto", 0.0)


# -- the pipeline ----------------------------------------------------------------------------


class _OneAtATime(MemorySink):
    """A memory sink that lets :class:`_LockstepCamera` send its next frame after each write."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Semaphore(0)

    def _write(self, frame: np.ndarray) -> None:
        super()._write(frame)
        self.written.release()


class _LockstepCamera(Source):
    """A camera that sends ``frames`` (H x W x 3 uint8 BGR) one at a time: each after the sink
    has the one before, so one frame is in the pipeline at a time; it ends when ``pipeline``
    (set once it is made) has finished. Its frame rate is ``fps`` as far as the pipeline knows;
    the frames come as fast as the output takes them. ``notice`` frames from ``lost_from`` on:
    the last one again, as a lost camera's."""

    def __init__(
        self, frames: list[np.ndarray], sink: _OneAtATime, *, fps: float, lost_from: int = 0
    ) -> None:
        self.frames, self.sink, self.fps = frames, sink, fps
        self.height, self.width = frames[0].shape[:2]
        self.description = "lockstep camera"
        self.lost_from = lost_from
        self.sent = 0
        self.pipeline: Pipeline | None = None

    def read(self) -> np.ndarray | None:
        while self.sent and not self.sink.written.acquire(timeout=0.05):
            if self.pipeline is not None and not self.pipeline.running:
                return None  # the output has ended: no frame will be written
        if self.sent >= len(self.frames):
            return None
        if self.lost_from and self.sent >= self.lost_from:
            self.notice = "camera lost: showing its last picture"
            frame = self.frames[self.lost_from - 1]
        else:
            frame = self.frames[self.sent]
        self.sent += 1
        return frame


def _processor(segmenter: Segmenter) -> FrameProcessor:
    return FrameProcessor(segmenter, Compositor(BlurBackground()))


def _run(camera: _LockstepCamera, segmenter: Segmenter, sync: SyncPolicy | str) -> Pipeline:
    pipeline = camera.pipeline = Pipeline(camera, _processor(segmenter), [camera.sink], sync=sync)
    pipeline.start()
    try:
        assert pipeline.wait(120.0), "the pipeline did not get through the frames"
    finally:
        pipeline.stop()
    return pipeline


def test_with_sync_every_frame_is_shown_with_its_own_mask() -> None:
    frames = decode_video(fixture_path("clip.mp4"))[:20]
    camera = _LockstepCamera(frames, _OneAtATime(), fps=1 / LONG)
    segmenter = StandInSegmenter(follow_brightness=True)  # each frame's mask is its own
    pipeline = _run(camera, segmenter, SyncPolicy("on", camera.fps, max_wait=LONG))

    stats = pipeline.stats
    assert stats.get("frames_out") == 20 and stats.get("masks") == 20 == segmenter.calls
    assert stats.get("frames_own_mask") == 20 and stats.get("sync_missed") == 0
    assert stats.percentiles("mask_age") == {"p50_ms": 0.0, "p95_ms": 0.0}
    # What is shown is what 'vbg process' makes of each frame with its own mask: no lag.
    offline = _processor(StandInSegmenter(follow_brightness=True))
    expected = [offline.process(frame, index / 30).frame for index, frame in enumerate(frames)]
    assert len(camera.sink.frames) == 20
    for shown, made in zip(camera.sink.frames, expected, strict=True):
        assert np.array_equal(shown, made)


def test_without_sync_no_frame_is_held() -> None:
    frames = decode_video(fixture_path("clip.mp4"))[:10]
    camera = _LockstepCamera(frames, _OneAtATime(), fps=30.0)
    pipeline = _run(camera, StandInSegmenter(), "off")
    assert pipeline.sync.mode == "off"
    assert pipeline.stats.get("frames_out") == 10 and pipeline.stats.get("frames_held") == 0


def test_a_frame_without_a_new_mask_is_not_held_for_the_bound() -> None:
    # A still scene: the model looks at the first frame only (the gate's clock never moves, so
    # it never looks again). Had the other 29 frames each been held for the bound (10 minutes),
    # the run would not end: the model thread says "done, no new mask" for each.
    frames = decode_video(fixture_path("clip.mp4"))[:1] * 30
    camera = _LockstepCamera(frames, _OneAtATime(), fps=1 / LONG)
    gate = StillSceneGate(StandInSegmenter(), clock=lambda: 0.0)
    pipeline = _run(camera, gate, SyncPolicy("on", camera.fps, max_wait=LONG))
    stats = pipeline.stats
    assert stats.get("frames_out") == 30 and stats.get("masks") == 1
    assert stats.get("masks_skipped") == 29 == gate.skipped
    assert stats.get("frames_held") == 30 and stats.get("sync_missed") == 0
    assert stats.get("frames_own_mask") == 1  # the others show the first frame's mask


def test_a_frame_shown_again_is_not_held() -> None:
    # The camera is lost after 5 frames: its last frame is shown again, with its mask (the
    # model does not run on it again), and no frame waits for a mask that will not come.
    frames = decode_video(fixture_path("clip.mp4"))[:20]
    camera = _LockstepCamera(frames, _OneAtATime(), fps=1 / LONG, lost_from=5)
    segmenter = StandInSegmenter()
    pipeline = _run(camera, segmenter, SyncPolicy("on", camera.fps, max_wait=LONG))
    stats = pipeline.stats
    assert stats.get("frames_out") == 20 and segmenter.calls == stats.get("masks") == 5
    assert stats.get("frames_held") == 5 and stats.get("frames_own_mask") == 5


def test_a_failing_model_ends_a_held_frame_and_the_run() -> None:
    class Broken(StandInSegmenter):
        def predict(self, frame: np.ndarray) -> np.ndarray:
            raise RuntimeError("tensor shapes do not match")

    frames = decode_video(fixture_path("clip.mp4"))[:5]
    camera = _LockstepCamera(frames, _OneAtATime(), fps=1 / LONG)
    pipeline = camera.pipeline = Pipeline(
        camera,
        _processor(Broken()),
        [camera.sink],
        sync=SyncPolicy("on", camera.fps, max_wait=LONG),
    )
    pipeline.start()
    assert pipeline.wait(60.0)  # the held frame was let go when the model thread ended
    with pytest.raises(ModelError, match="tensor shapes do not match"):
        pipeline.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vbg-")]
