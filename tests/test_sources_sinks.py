"""Sources read real files through the camera interface; sinks write what users receive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvirtualcam

from conftest import StandInCamera, decode_video, fixture_path
from vbg.errors import SinkError, SourceError
from vbg.outputs.sinks import (
    MODPROBE,
    RecordingSink,
    VirtualCameraSink,
    find_loopback_device,
    setup_hint,
)
from vbg.sources.capture import ImageSource, VideoFileSource, open_source

CLIP_FRAMES = 75  # tests/fixtures/data/clip.mp4: 320 x 180 at 29.97 fps


def test_video_file_source_reads_every_frame_then_ends() -> None:
    path = fixture_path("clip.mp4")
    with open_source(str(path), realtime=False) as source:
        assert isinstance(source, VideoFileSource)
        assert (source.width, source.height) == (320, 180)
        assert source.fps == pytest.approx(29.97, abs=0.01)
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert source.read() is None  # the end stays the end
    # The same pictures as a decoder gives, in order, none dropped or repeated.
    decoded = decode_video(path)
    assert len(frames) == len(decoded) == CLIP_FRAMES
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(frames, decoded, strict=True))


def test_source_size_is_covered_and_loop_repeats() -> None:
    path = fixture_path("clip.mp4")
    decoded = decode_video(path)
    with VideoFileSource(path, width=180, height=180, loop=True, realtime=False) as source:
        frames = [source.read() for _ in range(CLIP_FRAMES + 2)]
    first, last, again, after = frames[0], frames[CLIP_FRAMES - 1], *frames[CLIP_FRAMES:]
    assert first is not None and last is not None and again is not None and after is not None
    assert all(f is not None and f.shape == (180, 180, 3) for f in frames)
    # Covered: the middle 180 x 180 of each 320 x 180 frame (scale 1), not the frame squeezed.
    assert np.array_equal(first, decoded[0][:, 70:250])
    # Looped: after frame 75 come frames 1 and 2 again.
    assert np.array_equal(again, first) and np.array_equal(after, decoded[1][:, 70:250])
    assert np.abs(last.astype(int) - again).mean() > 3  # the man moved in 2.5 s


def test_image_source_acts_as_a_still_camera() -> None:
    path = fixture_path("photos", "images", "girl_shibuya.jpg")
    source = open_source(str(path), fps=50)
    assert isinstance(source, ImageSource) and source.fps == 50
    a, b = source.read(), source.read()
    assert a is not None and b is not None and np.array_equal(a, b) and a is not b
    assert a.shape == (213, 320, 3) and a.dtype == np.uint8
    once = open_source(str(path), realtime=False)  # vbg process: the picture is one frame
    first = once.read()
    assert first is not None and np.array_equal(first, a) and once.read() is None


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "clip.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(SourceError, match="cannot be decoded"):
        open_source(str(junk))
    junk_image = tmp_path / "junk.png"
    junk_image.write_text("not an image")
    with pytest.raises(SourceError, match="cannot be decoded"):
        open_source(str(junk_image))


@pytest.mark.skipif(Path("/dev/video7").exists(), reason="this machine has a camera 7")
def test_absent_camera_says_what_to_do() -> None:
    with pytest.raises(SourceError, match="Camera 7 could not be opened.*--source"):
        open_source("7")


def test_virtual_camera_gets_rgb_frames_at_the_configured_size_and_rate(
    stand_in_camera: type[StandInCamera],
) -> None:
    sink = VirtualCameraSink(320, 240, 25.0, camera_factory=stand_in_camera, system="Darwin")
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:] = (255, 0, 0)  # blue in BGR
    sink.write(frame)
    sink.close()
    sink.close()
    camera = stand_in_camera.instances[0]
    assert (camera.width, camera.height, camera.fps) == (320, 240, 25.0)
    assert camera.frames_sent == 1 and camera.closed == 1
    assert camera.fmt == pyvirtualcam.PixelFormat.BGR  # handed over as it is, no RGB copy
    assert (camera.frames[0] == (0, 0, 255)).all()  # the call sees blue
    with pytest.raises(SinkError, match="virtual_cam output is closed"):
        sink.write(frame)
    assert camera.frames_sent == 1  # nothing reached the closed camera


def _fake_sysfs(root: Path, names: dict[str, str], module: bool = True) -> Path:
    for device, name in names.items():
        (root / "class" / "video4linux" / device).mkdir(parents=True)
        (root / "class" / "video4linux" / device / "name").write_text(name + "\n")
    if module:
        (root / "module" / "v4l2loopback").mkdir(parents=True)
    return root


def test_linux_picks_the_device_named_vbg_camera(
    tmp_path: Path, stand_in_camera: type[StandInCamera]
) -> None:
    sysfs = _fake_sysfs(tmp_path, {"video0": "Integrated Camera", "video10": "vbg camera"})
    assert find_loopback_device(sysfs) == "/dev/video10"
    sink = VirtualCameraSink(
        64, 48, 30, camera_factory=stand_in_camera, system="Linux", sysfs=sysfs
    )
    assert sink.device == "/dev/video10"


def test_missing_v4l2loopback_gives_the_setup_step(tmp_path: Path) -> None:
    sysfs = _fake_sysfs(tmp_path, {"video0": "Integrated Camera"}, module=False)
    with pytest.raises(SinkError, match="v4l2loopback is not loaded") as info:
        VirtualCameraSink(64, 48, 30, system="Linux", sysfs=sysfs)
    assert MODPROBE in str(info.value) and 'card_label="vbg camera"' in MODPROBE
    assert "OBS" in setup_hint("Darwin") and "OBS" in setup_hint("Windows")


@pytest.mark.skipif(Path("/sys/module/v4l2loopback").exists(), reason="v4l2loopback is loaded here")
def test_real_pyvirtualcam_without_v4l2loopback_gives_the_setup_step() -> None:
    with pytest.raises(SinkError, match="modprobe v4l2loopback"):
        VirtualCameraSink(64, 48, 30)


def test_virtual_camera_backend_failure_is_a_clear_error() -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("'obs' backend: virtual camera output could not be started")

    with pytest.raises(SinkError, match="could not be started.*--no-virtual-cam"):
        VirtualCameraSink(64, 48, 30, camera_factory=broken, system="Darwin")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_recording_is_a_file_a_decoder_reads_back(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    with RecordingSink(path, 320, 240, 30) as sink:
        for i in range(12):
            sink.write(np.full((240, 320, 3), i * 20, np.uint8))
    assert sink.frames_written == 12
    frames = decode_video(path)
    assert [f.shape for f in frames] == [(240, 320, 3)] * 12
    assert [round(float(f.mean())) for f in frames] == pytest.approx(
        [i * 20 for i in range(12)], abs=6
    )  # every frame, in order (steps of 20; the codec shifts levels a little)
    with pytest.raises(SinkError, match="record output is closed"):
        sink.write(frames[0])
    for unsupported in ("out.gif", "out.avi", "out.webm"):
        with pytest.raises(SinkError, match="ending in .mkv, .mp4"):
            RecordingSink(tmp_path / unsupported, 320, 240, 30)
    with pytest.raises(SinkError, match="does not exist"):
        RecordingSink(tmp_path / "missing" / "out.mp4", 320, 240, 30)
