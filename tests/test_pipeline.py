"""The live pipeline on a real video through the same source interface a camera uses.

The clip is the committed fixture (tests/fixtures/data/clip.mp4, 320x180, 75 frames of a man
sitting outdoors); the models are untrained or stand-ins, so nothing here depends on the
machine's speed: the tests count frames and masks."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MemorySink, StandInCamera, StandInSegmenter, decode_video, fixture_path
from vbg.commands.run import Controls, run
from vbg.compositing.backgrounds import (
    BlurBackground,
    ColorBackground,
    PassThrough,
    open_background,
)
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.errors import SinkError, SourceError
from vbg.mask_filters import MaskOptions
from vbg.outputs.sinks import RecordingSink, Sink
from vbg.pipeline import DropOldestQueue, LatestSlot, Pipeline
from vbg.processor import FrameProcessor
from vbg.sources.capture import Source, VideoFileSource


def test_latest_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.latest() == (0, None)
    assert slot.wait_newer(0, timeout=0.01) is None
    for i in range(5):
        slot.put(i)
    assert slot.wait_newer(0, timeout=0.01) == (5, 4)
    assert slot.wait_newer(5, timeout=0.01) is None
    slot.close()
    assert slot.wait_newer(5, timeout=5.0) is None and slot.closed


def test_drop_oldest_queue_drops_the_oldest_and_counts() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(3)
    for i in range(5):
        queue.put(i)
    assert queue.dropped == 2 and len(queue) == 3
    queue.close()
    assert [queue.get(0.01), queue.get(0.01), queue.get(0.01)] == [2, 3, 4]
    assert queue.get(0.01) is None and queue.closed


def _processor(segmenter=None, background=None, **options):  # type: ignore[no-untyped-def]
    return FrameProcessor(
        segmenter or StandInSegmenter(),
        Compositor(background or BlurBackground()),
        MaskOptions(**options),
    )


def test_run_records_a_real_video_and_writes_stats(
    tmp_path: Path, fcn_weights: Path, stand_in_camera: type[StandInCamera]
) -> None:
    clip = fixture_path("clip.mp4")
    config = RunConfig(
        source=str(clip),
        background=str(fixture_path("backgrounds")),
        weights=fcn_weights,
        inference_size=32,
        device="cpu",
        preview=False,
        record=tmp_path / "out.mkv",
        max_frames=40,
        stats=tmp_path / "stats.json",
    )
    run(config, camera_factory=stand_in_camera)

    frames = decode_video(tmp_path / "out.mkv")
    assert len(frames) == 40 and frames[0].shape == (180, 320, 3)
    camera = stand_in_camera.instances[0]
    clip_fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS)
    assert (camera.width, camera.height, camera.fps) == (320, 180, pytest.approx(clip_fps))
    assert camera.frames_sent == 40 and camera.closed == 1
    # The virtual camera got RGB: the recorded BGR frame reversed, up to compression.
    assert np.abs(camera.frames[-1][..., ::-1].astype(int) - frames[-1]).mean() < 8
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_out"] == 40
    # The model's thread runs at a lower priority (INFERENCE_NICENESS), so on a CPU that other
    # programs keep busy all 40 frames may go out before its first mask (under stress --cpu 2:
    # 2 runs in 4); each mask it made is counted with its time.
    stages = set(stats["stage_ms"])
    assert {"capture", "composite", "record", "virtual_cam"} <= stages
    assert ("segment" in stages) == (stats["masks"] >= 1)
    assert stats["model"] == "fcn_resnet50" and stats["device"] == "cpu"
    assert stats["sync"] == "auto"  # the config's default, handed to the pipeline
    assert stats["dropped"] == {"record": 0, "virtual_cam": 0}


class _SlowSink(Sink):
    """A sink that waits for the test before it writes anything (a stalled recorder)."""

    name = "slow"

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.frames = 0

    def _write(self, frame: np.ndarray) -> None:
        self.release.wait()
        self.frames += 1


def test_the_output_does_not_wait_for_the_model_or_a_slow_sink() -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), fps=50.0)
    held_model, held_sink = threading.Event(), threading.Event()
    segmenter = StandInSegmenter(hold=held_model)  # stuck on its first frame
    memory, slow = MemorySink(), _SlowSink(held_sink)
    green = ColorBackground((0, 255, 0))
    pipeline = Pipeline(source, _processor(segmenter, green), [memory, slow], max_frames=60)
    pipeline.start()
    assert pipeline.wait(60.0)
    # All 60 frames were composited while the model had no mask out yet and the slow output
    # had written nothing: neither held the output up.
    assert pipeline.stats.get("frames_out") == 60 and pipeline.stats.get("masks") == 0
    assert slow.frames == 0
    held_model.set()
    held_sink.set()
    pipeline.stop()
    assert len(memory.frames) == 60 and memory.closed and slow.closed
    assert slow.frames == 60  # the slow sink caught up from its own queue before it was closed
    # Before the first mask the room is never shown: the output is the background alone.
    assert all((frame == (0, 255, 0)).all() for frame in memory.frames)


class _FailingSource(Source):
    """A real file source whose read raises after ``fail_after`` frames (``error``)."""

    def __init__(self, path: Path, fail_after: int, error: Exception) -> None:
        self._inner = VideoFileSource(path)
        self.width, self.height, self.fps = self._inner.width, self._inner.height, 25.0
        self.description = "camera 0"
        self._left = fail_after
        self._error = error

    def read(self) -> np.ndarray | None:
        self._left -= 1
        if self._left < 0:
            raise self._error
        return self._inner.read()


def test_a_failing_camera_stops_cleanly_and_the_recording_plays(tmp_path: Path) -> None:
    error = cv2.error("OpenCV(5.0) error: (-215:Assertion failed) in function 'read'")
    source = _FailingSource(fixture_path("clip.mp4"), fail_after=15, error=error)
    recording = RecordingSink(tmp_path / "rec.mkv", source.width, source.height, source.fps)
    pipeline = Pipeline(source, _processor(background=PassThrough()), [recording])
    pipeline.start()
    assert pipeline.wait(30.0)
    # The OpenCV error reaches the user as one SourceError line that says what to do.
    with pytest.raises(SourceError, match="Reading camera 0 failed .* pick another with --source"):
        pipeline.stop()
    frames = decode_video(tmp_path / "rec.mkv")
    assert 1 <= len(frames) <= 15 and frames[0].shape == (180, 320, 3)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vbg-")]


def test_keys_switch_background_mirror_and_recording(tmp_path: Path) -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), loop=True)
    processor = _processor(background=open_background(str(fixture_path("backgrounds"))))
    compositor = processor.compositor
    memory = MemorySink()
    pipeline = Pipeline(source, processor, [memory])
    config = dataclasses.replace(RunConfig(), record_dir=tmp_path)
    controls = Controls(compositor, pipeline, config, size=(320, 180), fps=30.0, recording=None)
    first = compositor.background.name
    controls.handle("next", None)
    assert compositor.background.name != first
    controls.handle("previous", None)
    assert compositor.background.name == first
    controls.handle("blur", None)
    assert isinstance(compositor.background, BlurBackground)
    controls.handle("color", None)
    controls.handle("color", None)
    assert isinstance(compositor.background, ColorBackground)
    assert compositor.background.name == "color:#FFFFFF"
    controls.handle("none", None)
    assert isinstance(compositor.background, PassThrough)
    controls.handle("mirror", None)
    assert compositor.mirror
    controls.handle("help", None)
    assert controls.show_help and any("keys" in line for line in controls.status_lines())
    assert controls.handle("quit", None) is False

    pipeline.start()
    try:
        controls.handle("record", None)
        recording = controls.recording
        assert recording is not None
        deadline = time.monotonic() + 60
        while recording.frames_written < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        controls.handle("record", None)
        assert controls.recording is None
        frame = memory.frames[-1]
        controls.handle("snapshot", frame)
    finally:
        pipeline.stop()
        controls.close()
    frames = decode_video(recording.path)
    assert recording.path.suffix == ".mkv"  # the kind that plays even after a crash
    assert len(frames) >= 10 and frames[0].shape == (180, 320, 3)
    snapshots = list(tmp_path.glob("vbg-snapshot-*.png"))
    assert len(snapshots) == 1 and cv2.imread(str(snapshots[0])).shape == (180, 320, 3)


class _BrokenSink(Sink):
    """An output whose backend fails on the ``fail_on``-th frame, as pyvirtualcam does when the
    loopback device goes away."""

    name = "virtual_cam"

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on, self.frames = fail_on, 0

    def _write(self, frame: np.ndarray) -> None:
        self.frames += 1
        if self.frames == self.fail_on:
            raise RuntimeError("error sending frame: No such device")


def test_a_failing_output_is_dropped_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), fps=50.0, loop=True)
    broken, memory = _BrokenSink(fail_on=5), MemorySink()
    pipeline = Pipeline(source, _processor(), [broken, memory], max_frames=30)
    pipeline.start()
    assert pipeline.wait(60.0)
    assert pipeline.sinks == [memory]  # the broken one is out, the other one is still in
    pipeline.stop()  # no error: another output was left
    assert len(memory.frames) == 30 and broken.frames == 5 and broken.closed
    assert "The virtual_cam output failed (error sending frame: No such device). Going on " \
        "without it." in caplog.text  # fmt: skip


def test_when_the_last_output_fails_the_run_ends_with_its_error() -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), fps=50.0, loop=True)
    pipeline = Pipeline(source, _processor(), [_BrokenSink(fail_on=3)])
    pipeline.start()
    assert pipeline.wait(60.0)
    with pytest.raises(SinkError, match="virtual_cam output failed") as failure:
        pipeline.stop()
    assert isinstance(failure.value.__cause__, RuntimeError)  # chained: the cause is kept


def test_a_sink_is_never_closed_while_it_writes() -> None:
    release = threading.Event()
    sink = _SlowSink(release)
    writer = threading.Thread(target=sink.write, args=(np.zeros((4, 4, 3), np.uint8),))
    writer.start()
    while sink._lock.acquire(blocking=False):  # wait until the write holds the lock
        sink._lock.release()
    assert sink.close(timeout=0.05) is False and not sink.closed  # the write still runs
    release.set()
    writer.join(5.0)
    assert sink.close() is True and sink.closed and sink.frames == 1
    with pytest.raises(SinkError, match="closed"):
        sink.write(np.zeros((4, 4, 3), np.uint8))


def test_a_live_run_caps_opencvs_worker_threads() -> None:
    """On a many-core machine OpenCV's default pool (a thread per core) tripled the process's
    CPU at the same rates; a live run keeps it to OPENCV_THREADS beside its own threads."""
    from vbg.commands.frame_path import OPENCV_THREADS, live_segmenter

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(16)
        live_segmenter(StandInSegmenter(), skip_still=False)
        assert cv2.getNumThreads() == OPENCV_THREADS
    finally:
        cv2.setNumThreads(before)
