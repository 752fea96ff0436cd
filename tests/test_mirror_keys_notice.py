"""What the user sees (issue 12): the mirror flips the person, never a background picture; n / p
step on from the picture last shown; a run in which nobody is found says so in the log and the
preview's overlay, never on the outputs.

The person is a real one (a fixture photo's cut-out with its exact mask) on a green screen, and
the stand-in model keys out the green (tests/test_crop.py); the "no person" tests count frames
with frame times from an injected clock, so a busy machine changes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_crop import GreenKey, scene
from test_pipeline_sync import LONG, _LockstepCamera, _OneAtATime

from conftest import MemorySink, StandInCamera, StandInSegmenter, decode_video
from vbg.commands import frame_path
from vbg.commands.cli import main
from vbg.commands.run import Controls, run
from vbg.compositing.backgrounds import (
    BlurBackground,
    ColorBackground,
    ImageBackground,
    open_background,
)
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.mask_filters import MaskOptions
from vbg.pipeline import Pipeline, SyncPolicy
from vbg.processor import NO_PERSON, PERSON_AGAIN, FrameProcessor

SIZE = (640, 360)
FPS = 30.0
TICKS = 32.0  # frames a second where frame times must add up exactly (powers of two)
MODEL = "lraspp_mobilenet_v3_large"  # named, so that no test depends on what "auto" picks


def text_picture() -> np.ndarray:
    """A 640x360 background that reads differently mirrored: dark left half, light right half,
    and a line of text across both."""
    picture = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
    picture[:, : SIZE[0] // 2] = (90, 40, 30)
    picture[:, SIZE[0] // 2 :] = (200, 210, 220)
    cv2.putText(picture, "vbg 2026 ABC", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 2.5,
                (0, 200, 255), 7, cv2.LINE_AA)  # fmt: skip
    return picture


def person_on_green() -> tuple[np.ndarray, np.ndarray]:
    """A 640x360 frame with a person on the right of a green screen, and the true mask."""
    frame, truth = scene([("doctor_saxon", 820, 150, 1.6)])
    small = cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA)
    person = cv2.resize(truth.astype(np.uint8), SIZE, interpolation=cv2.INTER_NEAREST) > 0
    return small, person


def check_mirrored(
    out: np.ndarray,
    frame: np.ndarray,
    truth: np.ndarray,
    picture: np.ndarray,
    *,
    person: bool = True,
    within: float = 3.0,
) -> None:
    """``out`` shows ``picture`` as it is where the mirrored person is not, and (``person``) the
    person flipped left-right. Mean colour differences (0-255 a channel), away from the edge
    where the model's coarse mask and the true one differ."""
    band = np.ones((25, 25), np.uint8)
    flipped = truth[:, ::-1].astype(np.uint8)
    room = cv2.dilate(flipped, band) == 0
    inside = cv2.erode(flipped, band) > 0
    assert room.mean() > 0.5 and inside.sum() > 2000

    def differs(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(a[where].astype(int) - b[where]).mean())

    # The background reads as it is, not mirrored: the text is the right way round.
    assert differs(out, picture, room) < within
    assert differs(out, picture[:, ::-1], room) > 10 * within
    if person:  # the person is the camera's picture flipped, where the flipped mask is
        assert differs(out, frame[:, ::-1], inside) < within
        assert differs(out, frame, inside) > 10 * within


# -- the mirror flips the person, never the background picture -----------------------------


def test_mirror_flips_the_person_and_never_the_background_picture(tmp_path: Path) -> None:
    frame, truth = person_on_green()
    path = tmp_path / "text.png"
    picture = text_picture()
    cv2.imwrite(str(path), picture)  # lossless: the file is the picture
    processor = FrameProcessor(GreenKey((64, 36)), Compositor(ImageBackground(path), mirror=True))
    for index in range(3):  # the mask filters at work over a few frames
        rendered = processor.process(frame, index / FPS)
        check_mirrored(rendered.frame, frame, truth, picture)
    # Light wrap takes the light of the picture as shown, so it does not mirror it either.
    wrapped = FrameProcessor(
        GreenKey((64, 36)), Compositor(ImageBackground(path), mirror=True, light_wrap=0.8)
    ).process(frame, 0.0)
    check_mirrored(wrapped.frame, frame, truth, picture)
    # The mask stays in the camera's order: what vbg process --save-mask flips to line it up.
    assert rendered.matte is not None
    assert (rendered.matte > 127)[truth].mean() > 0.9
    # Before the first mask: the picture alone, as it is.
    fresh = FrameProcessor(GreenKey((64, 36)), Compositor(ImageBackground(path), mirror=True))
    assert np.array_equal(fresh.render(frame, None, 0.0).frame, picture)


def test_the_blurred_room_is_mirrored_with_the_person() -> None:
    frame, truth = person_on_green()
    frame[: SIZE[1] // 3, : SIZE[0] // 4] = (255, 255, 255)  # a lamp on the room's left
    mirrored = Compositor(BlurBackground(), mirror=True).composite(frame, None, 0.0)
    plain = Compositor(BlurBackground()).composite(frame, None, 0.0)
    assert np.array_equal(mirrored, plain[:, ::-1])  # the room is the camera's picture too


def test_turning_the_mirror_over_does_not_disturb_the_mask_filters() -> None:
    # The person walks right to left; the mirror goes on at frame 6 and off at frame 12. The
    # filters (smoothing along the flow, hysteresis, propagation, refiner) see the camera's
    # frames throughout, so every mask is the one a run without the mirror makes.
    frames = [scene([("doctor_saxon", 900 - 40 * i, 150, 1.6)])[0] for i in range(18)]
    frames = [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in frames]
    background = ColorBackground((255, 0, 0))
    toggled = FrameProcessor(GreenKey((64, 36)), Compositor(background), MaskOptions())
    steady = FrameProcessor(GreenKey((64, 36)), Compositor(background), MaskOptions())
    for index, frame in enumerate(frames):
        toggled.compositor.mirror = 6 <= index < 12
        shown = toggled.process(frame, index / FPS)
        plain = steady.process(frame, index / FPS)
        assert shown.matte is not None and plain.matte is not None
        assert np.array_equal(shown.matte, plain.matte)
        expected = plain.frame[:, ::-1] if toggled.compositor.mirror else plain.frame
        assert np.array_equal(shown.frame, expected)  # a colour reads the same both ways


def test_the_virtual_camera_and_the_recording_get_the_mirrored_person_on_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in_camera: type[StandInCamera]
) -> None:
    frame, truth = person_on_green()
    clip = tmp_path / "person.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for _ in range(10):
        writer.write(frame)
    writer.release()
    frame = decode_video(clip)[0]  # the camera's picture as the run reads it
    path = tmp_path / "text.png"
    picture = text_picture()
    cv2.imwrite(str(path), picture)  # lossless: the file is the picture
    monkeypatch.setattr(frame_path, "load_model", lambda config, device=None: GreenKey((64, 36)))
    config = RunConfig(
        source=str(clip), loop=True, background=str(path), mirror=True, model=MODEL,
        preview=False, record=tmp_path / "call.mkv", max_frames=45,
    )  # fmt: skip
    run(config, camera_factory=stand_in_camera)
    call = [f[..., ::-1] for f in stand_in_camera.instances[0].frames]  # RGB -> BGR
    recorded = decode_video(tmp_path / "call.mkv")
    assert len(call) == len(recorded) == 45
    for sent, kept in zip(call, recorded, strict=True):
        assert np.abs(sent.astype(int) - kept).mean() < 6  # the same frame (the codec's loss)
    # Frames before the model's first mask show the picture alone; the others the person too.
    with_person = [f for f in call if not np.array_equal(f, picture)]
    assert len(with_person) >= 10
    for sent in call:
        check_mirrored(sent, frame, truth, picture, person=False)
    for sent in with_person:
        check_mirrored(sent, frame, truth, picture)
    for kept in recorded[-5:]:
        check_mirrored(kept, frame, truth, picture, within=8.0)


# -- n / p step on from the picture last shown ----------------------------------------------


def _folder(tmp_path: Path, count: int) -> Path:
    """A folder of ``count`` pictures 1.png, 2.png, ..., each lighter than the one before."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(count):
        cv2.imwrite(str(folder / f"{index + 1}.png"), np.full((36, 64, 3), 40 * index, np.uint8))
    return folder


def _controls(tmp_path: Path, background: str) -> Controls:
    processor = FrameProcessor(StandInSegmenter(), Compositor(open_background(background)))
    source = _LockstepCamera([np.zeros((36, 64, 3), np.uint8)], _OneAtATime(), fps=FPS)
    pipeline = Pipeline(source, processor, [MemorySink()])  # never started: only the keys
    config = dataclasses.replace(RunConfig(), record_dir=tmp_path)
    return Controls(processor.compositor, pipeline, config, size=(64, 36), fps=FPS,
                    recording=None)  # fmt: skip


def test_n_and_p_step_on_from_the_picture_last_shown(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 4)
    controls = _controls(tmp_path, str(folder))
    compositor = controls.compositor
    shown = []
    for key in ("next", "next", "blur", "next", "color", "previous", "none", "previous",
                "previous", "previous", "next"):  # fmt: skip
        controls.handle(key, None)
        shown.append(compositor.background.name)
    controls.close()
    assert shown == ["2.png", "3.png", "blur", "4.png", "color:#00B140", "3.png", "none",
                     "2.png", "1.png", "4.png", "1.png"]  # fmt: skip
    # What the compositor draws is that picture: p from the first is the fourth.
    frame = np.zeros((36, 64, 3), np.uint8)
    controls.handle("previous", None)
    assert (compositor.composite(frame, None, 0.0) == 3 * 40).all()


def test_n_after_another_key_brings_back_a_single_picture(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), np.full((36, 64, 3), 77, np.uint8))
    controls = _controls(tmp_path, str(path))
    shown = []
    for key in ("blur", "next", "color", "previous", "next"):
        controls.handle(key, None)
        shown.append(controls.compositor.background.name)
    controls.close()
    assert shown == ["blur", "one.png", "color:#00B140", "one.png", "one.png"]


# -- nobody found ----------------------------------------------------------------------------


def _nobody() -> np.ndarray:
    return np.full((36, 64, 3), 128, np.uint8)  # an even picture: the stand-in finds no one


def _somebody() -> np.ndarray:
    frame = _nobody()
    frame[8:30, 24:40] = 220  # brighter than the rest: a person to the stand-in
    return frame


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "vbg"]


def test_nobody_for_three_seconds_is_said_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vbg")
    processor = FrameProcessor(
        StandInSegmenter(follow_brightness=True), Compositor(ColorBackground((0, 255, 0)))
    )
    # At 32 fps (3 s is 96 frames, and the frame times add up exactly): 100 frames of nobody,
    # 30 with a person, 100 of nobody again.
    scenes = [_nobody()] * 100 + [_somebody()] * 30 + [_nobody()] * 100
    warnings, outputs = [], []
    for index, frame in enumerate(scenes):
        rendered = processor.process(frame, index / TICKS)
        warnings.append(processor.warning)
        outputs.append(rendered.frame)
    assert warnings[:96] == [None] * 96  # the first mask is at 0 s
    assert warnings[96:100] == [NO_PERSON] * 4
    assert warnings[100:225] == [None] * 125  # the person was last seen in frame 129
    assert warnings[225:] == [NO_PERSON] * 5
    assert _said(caplog) == [(logging.WARNING, NO_PERSON), (logging.INFO, PERSON_AGAIN),
                             (logging.WARNING, NO_PERSON)]  # fmt: skip
    assert NO_PERSON == "no person found for 3 s: check the light, the camera, or --model/--weights"
    # Never on the picture: the call sees the background, and nothing written on it.
    for index in (50, 98, 228):
        assert (outputs[index] == (0, 255, 0)).all()
    processor.reset()  # a new stream starts without the warning
    assert processor.warning is None


class _Overlaid(_OneAtATime):
    """A lockstep sink that reads the preview overlay's lines (``controls``) as each frame is
    written, before the camera may send the next frame."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: Controls | None = None
        self.overlay: list[list[str]] = []

    def _write(self, frame: np.ndarray) -> None:
        assert self.controls is not None
        self.overlay.append(self.controls.status_lines())
        super()._write(frame)


def test_a_live_run_says_it_in_the_overlay_and_never_on_the_outputs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vbg")
    sink = _Overlaid()
    camera = _LockstepCamera([_nobody()] * 100 + [_somebody()] * 10, sink, fps=TICKS)
    processor = FrameProcessor(
        StandInSegmenter(follow_brightness=True), Compositor(ColorBackground((0, 255, 0)))
    )
    ticks = itertools.count()  # the clock counts frames: one tick at the start, one a frame
    pipeline = camera.pipeline = Pipeline(
        camera, processor, [sink], sync=SyncPolicy("on", TICKS, max_wait=LONG),
        clock=lambda: next(ticks) / TICKS,
    )  # fmt: skip
    sink.controls = Controls(processor.compositor, pipeline, RunConfig(), size=(64, 36),
                             fps=TICKS, recording=None)  # fmt: skip
    pipeline.start()
    try:
        assert pipeline.wait(120.0)
    finally:
        pipeline.stop()
        sink.controls.close()
    assert len(sink.frames) == 110 and pipeline.stats.get("frames_own_mask") == 110
    # Frame k is at (k + 1) / 32 s and shown with its own mask; the first mask is frame 0's.
    noticed = [index for index, lines in enumerate(sink.overlay) if NO_PERSON in lines]
    assert noticed == [96, 97, 98, 99]  # in the overlay while nobody is there, from 3 s on
    assert _said(caplog).count((logging.WARNING, NO_PERSON)) == 1
    assert _said(caplog).count((logging.INFO, PERSON_AGAIN)) == 1
    for frame in sink.frames[:100]:
        assert (frame == (0, 255, 0)).all()  # the call never sees the notice


def test_vbg_process_of_a_video_with_nobody_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "empty_room.avi"  # lossless: an even picture stays even
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), FPS, (64, 36))
    for _ in range(150):  # 5 s of nobody
        writer.write(_nobody())
    writer.release()
    monkeypatch.setattr(
        frame_path,
        "load_model",
        lambda config, device=None: StandInSegmenter(follow_brightness=True),
    )
    code = main(["process", str(clip), "-o", str(tmp_path / "out.mkv"),
                 "--background", "color:#00FF00", "--model", MODEL])  # fmt: skip
    assert code == 0
    assert capsys.readouterr().err.count("no person found for 3 s") == 1
