"""Sources read real files through the camera interface; sinks write what users receive."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import StandInCamera, data_path
from vbg.errors import SinkError, SourceError
from vbg.outputs.sinks import (
    MODPROBE,
    RecordingSink,
    VirtualCameraSink,
    find_loopback_device,
    setup_hint,
)
from vbg.sources.capture import ImageSource, VideoFileSource, open_source


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    count, size = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, (frame.shape[1], frame.shape[0])
    capture.release()
    return count, size


def test_video_file_source_reads_every_frame_then_ends() -> None:
    path = data_path("video_gt", "parkour", "parkour.mp4")
    with open_source(str(path), realtime=False) as source:
        assert isinstance(source, VideoFileSource)
        assert (source.width, source.height, source.fps) == (854, 480, 24)
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert len(frames) == 100
    assert all(f.shape == (480, 854, 3) and f.dtype == np.uint8 for f in frames)


def test_source_size_is_covered_and_loop_repeats() -> None:
    path = data_path("video_gt", "parkour", "parkour.mp4")
    with VideoFileSource(path, width=640, height=640, loop=True, realtime=False) as source:
        first = source.read()
        for _ in range(99):
            source.read()
        again = source.read()  # frame 101 is frame 1 again
    assert first is not None and again is not None and first.shape == (640, 640, 3)
    assert np.abs(first.astype(int) - again).mean() < 3


def test_image_source_acts_as_a_still_camera() -> None:
    path = data_path("images", "skimage_astronaut.png")
    source = open_source(str(path), fps=50)
    assert isinstance(source, ImageSource) and source.fps == 50
    a, b = source.read(), source.read()
    assert a is not None and b is not None and np.array_equal(a, b) and a is not b


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
    assert (camera.frames[0] == (0, 0, 255)).all()  # blue in RGB


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


def test_recording_is_a_file_a_decoder_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with RecordingSink(path, 320, 240, 30) as sink:
        for i in range(12):
            sink.write(np.full((240, 320, 3), i * 20, np.uint8))
    assert _count_frames(path) == (12, (320, 240))
    with pytest.raises(SinkError, match="ending in"):
        RecordingSink(tmp_path / "out.gif", 320, 240, 30)
    with pytest.raises(SinkError, match="does not exist"):
        RecordingSink(tmp_path / "missing" / "out.mp4", 320, 240, 30)
