"""The one frame path: ``vbg run`` and ``vbg process`` put a frame through the same code with the
same options, so where they use the same mask they give the same picture."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MemorySink, StandInCamera, StandInSegmenter, fixture_path
from vbg.commands import frame_path
from vbg.commands.process import process_frames
from vbg.commands.run import run
from vbg.compositing.backgrounds import ColorBackground
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.images import cover, read_image
from vbg.mask_filters import MaskOptions
from vbg.processor import FrameProcessor
from vbg.sources.video_file import VideoFileReader


def test_run_and_process_give_the_same_frames_for_the_same_masks(
    monkeypatch: pytest.MonkeyPatch, stand_in_camera: type[StandInCamera]
) -> None:
    # A model whose mask does not depend on the frame: whatever frame run's model last saw, it
    # composites each frame with the same mask as process does. The filters that carry a mask
    # from the frames the model saw to the next (smoothing along the flow, hysteresis,
    # propagation) are off: which frames run's model sees depends on the machine's speed, and
    # process's model sees them all. Everything else is the real frame path with options that
    # touch every stage: the guided refiner, the feather, a picture background, light wrap and
    # mirror.
    monkeypatch.setattr(frame_path, "load_model", lambda config, device=None: StandInSegmenter())
    clip = fixture_path("clip.mp4")
    picture = next(fixture_path("backgrounds").iterdir())
    config = RunConfig(
        source=str(clip),
        background=str(picture),
        propagate=False,
        mask_smoothing=0.0,
        hysteresis=0.0,
        feather=2.0,
        light_wrap=0.6,
        mirror=True,
        preview=False,
        max_frames=40,
    )
    run(config, camera_factory=stand_in_camera)
    live = [frame[..., ::-1] for frame in stand_in_camera.instances[0].frames]  # RGB -> BGR

    sink = MemorySink()
    with VideoFileReader(clip) as source:  # vbg process reads with PyAV, vbg run with OpenCV
        process_frames(source, frame_path.make_processor(config, live=False), sink)
    offline = sink.frames

    assert len(live) == 40
    # Frames composited before the model's first mask show the background alone (as it is: the
    # mirror flips the person, never the picture).
    background_only = cover(read_image(picture), 320, 180)
    while live and np.array_equal(live[0], background_only):
        live.pop(0)
    assert len(live) >= 20
    # Each frame of the run is exactly one frame of process, in the same order (the run may
    # skip a frame when the machine is busy; process never does).
    position = 0
    for frame in live:
        while position < len(offline) and not np.array_equal(frame, offline[position]):
            position += 1
        assert position < len(offline), "a frame of vbg run that vbg process never made"
        position += 1


def test_a_frame_shown_again_keeps_its_mask_and_carries_the_notice() -> None:
    processor = FrameProcessor(
        StandInSegmenter(follow_brightness=True), Compositor(ColorBackground((0, 255, 0)))
    )
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[20:70, 60:100] = 200  # a bright "person"
    first = processor.process(frame, 0.0)
    again = processor.render(frame, None, 0.04, notice="camera lost", repeat=True)
    assert again.matte is first.matte  # the same mask, not made again
    assert again.frame[-10:].mean() < first.frame[-10:].mean() * 0.6  # the notice strip
    assert np.array_equal(again.frame[:60], first.frame[:60])  # the picture above it


def test_before_the_first_mask_only_the_background_is_shown() -> None:
    processor = FrameProcessor(StandInSegmenter(), Compositor(ColorBackground((0, 255, 0))))
    frame = np.full((90, 160, 3), 128, np.uint8)
    rendered = processor.render(frame, None, 0.0)
    assert rendered.matte is None and (rendered.frame == (0, 255, 0)).all()


def test_the_mask_filters_see_every_frame_of_a_file_in_order() -> None:
    segmenter = StandInSegmenter(follow_brightness=True)
    processor = FrameProcessor(segmenter, Compositor(ColorBackground((0, 0, 0))), MaskOptions())
    sink = MemorySink()
    with VideoFileReader(fixture_path("clip.mp4")) as source:
        assert process_frames(source, processor, sink) == 75
    assert segmenter.calls == 75 and len(sink.frames) == 75
