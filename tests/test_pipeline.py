"""The live pipeline on a real video through the same source interface a camera uses."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MemorySink, StandInCamera, data_path, decode_video
from vbg.commands.run import Controls, run
from vbg.compositing.backgrounds import (
    BlurBackground,
    ColorBackground,
    PassThrough,
    open_background,
)
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.errors import SourceError
from vbg.outputs.sinks import RecordingSink, Sink
from vbg.pipeline import DropOldestQueue, LatestSlot, Pipeline
from vbg.segmentation.segmenter import load_segmenter
from vbg.sources.capture import Source, VideoFileSource

CLIP = ("videos", "volcomix_thoughtful-35590.mp4")  # 640x360, a man sitting outdoors


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


def test_run_records_a_real_video_and_writes_stats(
    tmp_path: Path, fcn_weights: Path, stand_in_camera: type[StandInCamera]
) -> None:
    clip = data_path(*CLIP)
    config = RunConfig(
        source=str(clip),
        background=str(data_path("backgrounds", "mate_Garden.jpg")),
        weights=fcn_weights,
        device="cpu",
        preview=False,
        record=tmp_path / "out.mp4",
        max_frames=40,
        stats=tmp_path / "stats.json",
    )
    run(config, camera_factory=stand_in_camera)

    frames = decode_video(tmp_path / "out.mp4")
    assert len(frames) == 40 and frames[0].shape == (360, 640, 3)
    camera = stand_in_camera.instances[0]
    clip_fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS)
    assert (camera.width, camera.height, camera.fps) == (640, 360, pytest.approx(clip_fps))
    assert camera.frames_sent == 40 and camera.closed == 1
    # The virtual camera got RGB: the recorded BGR frame reversed, up to compression.
    assert np.abs(camera.frames[-1][..., ::-1].astype(int) - frames[-1]).mean() < 8
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_out"] == 40 and stats["masks"] >= 1
    assert stats["fps_out"] > 0 and stats["mask_fps"] > 0
    assert {"capture", "segment", "composite", "record", "virtual_cam"} <= set(stats["stage_ms"])
    assert stats["model"] == "fcn_resnet50" and stats["device"] == "cpu"
    assert stats["dropped"] == {"record": 0, "virtual_cam": 0}


class _SlowSink(Sink):
    name = "slow"

    def __init__(self) -> None:
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        time.sleep(0.05)  # 20 frames/s against a 50 frames/s camera
        self.frames += 1


def _segmenter(fcn_weights: Path):  # type: ignore[no-untyped-def]
    return load_segmenter("fcn_resnet50", weights=fcn_weights, device="cpu", inference_size=64)


def test_output_keeps_the_camera_rate_when_a_sink_and_the_model_are_slow(
    fcn_weights: Path,
) -> None:
    source = VideoFileSource(data_path(*CLIP), fps=50.0)
    memory, slow = MemorySink(), _SlowSink()
    pipeline = Pipeline(
        source,
        _segmenter(fcn_weights),
        Compositor(BlurBackground()),
        [memory, slow],
        max_frames=60,
    )
    pipeline.start()
    assert pipeline.wait(30.0)
    pipeline.stop()
    assert len(memory.frames) == 60 and memory.closed  # every output frame, none held up
    assert slow.frames == 60  # the slow sink caught up from its own queue
    stats = pipeline.stats.to_dict()
    assert stats["masks"] < stats["frames_out"]  # the model is slower than the camera here
    assert stats["frames_out"] == 60


class _FailingSource(Source):
    """A real file source that raises like an unplugged camera after ``fail_after`` frames."""

    def __init__(self, path: Path, fail_after: int) -> None:
        self._inner = VideoFileSource(path)
        self.width, self.height, self.fps = self._inner.width, self._inner.height, 25.0
        self.description = "failing"
        self._left = fail_after

    def read(self) -> np.ndarray | None:
        self._left -= 1
        if self._left < 0:
            raise SourceError("Camera 0 stopped sending frames (unplugged?).")
        return self._inner.read()


def test_a_failing_camera_stops_cleanly_and_the_recording_plays(
    tmp_path: Path, fcn_weights: Path
) -> None:
    source = _FailingSource(data_path(*CLIP), fail_after=15)
    recording = RecordingSink(tmp_path / "rec.mp4", source.width, source.height, source.fps)
    pipeline = Pipeline(source, _segmenter(fcn_weights), Compositor(PassThrough()), [recording])
    pipeline.start()
    assert pipeline.wait(30.0)
    with pytest.raises(SourceError, match="unplugged"):
        pipeline.stop()
    frames = decode_video(tmp_path / "rec.mp4")
    assert 1 <= len(frames) <= 15 and frames[0].shape == (360, 640, 3)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vbg-")]


def test_keys_switch_background_mirror_and_recording(tmp_path: Path, fcn_weights: Path) -> None:
    source = VideoFileSource(data_path(*CLIP), loop=True)
    compositor = Compositor(open_background(str(data_path("backgrounds"))))
    memory = MemorySink()
    pipeline = Pipeline(source, _segmenter(fcn_weights), compositor, [memory])
    config = dataclasses.replace(RunConfig(), record_dir=tmp_path)
    controls = Controls(compositor, pipeline, config, size=(640, 360), fps=25.0, recording=None)
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
        deadline = time.monotonic() + 20
        while recording.frames_written < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        controls.handle("record", None)
        assert controls.recording is None
        frame = memory.frames[-1]
        controls.handle("snapshot", frame)
    finally:
        pipeline.stop()
    frames = decode_video(recording.path)
    assert recording.path.suffix == ".mkv"  # the kind that plays even after a crash
    assert len(frames) >= 10 and frames[0].shape == (360, 640, 3)
    snapshots = list(tmp_path.glob("vbg-snapshot-*.png"))
    assert len(snapshots) == 1 and cv2.imread(str(snapshots[0])).shape == (360, 640, 3)


def test_every_frame_mode_composites_each_frame_of_a_file_in_order(fcn_weights: Path) -> None:
    path = data_path(*CLIP)
    source = VideoFileSource(path, realtime=False)  # as fast as it decodes
    memory = MemorySink()
    pipeline = Pipeline(source, _segmenter(fcn_weights), Compositor(PassThrough()), [memory],
                        max_frames=40, every_frame=True)  # fmt: skip
    pipeline.start()
    assert pipeline.wait(60.0)
    pipeline.stop()
    assert pipeline.stats.get("frames_skipped") == 0
    expected = decode_video(path)[:40]
    assert len(memory.frames) == 40
    assert all(np.array_equal(a, b) for a, b in zip(memory.frames, expected, strict=True))
