"""vbg doctor: each check on the situations a user meets, and the command on this machine."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vbg.commands.cli import main
from vbg.commands.doctor import check_cameras, check_display, check_virtual_camera, check_weights
from vbg.sources.capture import CameraMode


def _sysfs(root: Path, *, module: bool, label: str | None = None, caps: str = "Y") -> Path:
    """A /sys tree as Linux shows it: a real camera video0, and a loopback video10 if ``label``."""
    real = root / "devices" / "pci0000:00" / "usb1" / "video4linux" / "video0"
    real.mkdir(parents=True)
    (real / "name").write_text("Integrated Camera\n")
    links = root / "class" / "video4linux"
    links.mkdir(parents=True)
    (links / "video0").symlink_to(real)
    if module:
        params = root / "module" / "v4l2loopback" / "parameters"
        params.mkdir(parents=True)
        (params / "exclusive_caps").write_text(caps + "\n")
    if label is not None:
        loop = root / "devices" / "virtual" / "video4linux" / "video10"
        loop.mkdir(parents=True)
        (loop / "name").write_text(label + "\n")
        (links / "video10").symlink_to(loop)
    return root


def test_virtual_camera_check_names_the_fix(tmp_path: Path) -> None:
    missing = check_virtual_camera(system="Linux", sysfs=_sysfs(tmp_path / "a", module=False))
    assert missing.line().startswith("FAIL  virtual camera: v4l2loopback is not loaded. Fix: "
                                     "install it (Debian/Ubuntu: sudo apt install")  # fmt: skip
    assert 'card_label="vbg camera" exclusive_caps=1' in missing.line()
    unnamed = check_virtual_camera(
        system="Linux", sysfs=_sysfs(tmp_path / "b", module=True, label="Dummy video device")
    )
    assert not unnamed.ok and "no v4l2loopback device is named 'vbg camera'" in unnamed.line()
    no_caps = check_virtual_camera(
        system="Linux", sysfs=_sysfs(tmp_path / "c", module=True, label="vbg camera", caps="N")
    )
    assert not no_caps.ok and "exclusive_caps is 'N'" in no_caps.line()
    good = check_virtual_camera(
        system="Linux", sysfs=_sysfs(tmp_path / "d", module=True, label="vbg camera")
    )
    assert good.ok and good.line() == "ok    virtual camera: /dev/video10 is 'vbg camera', " \
        "exclusive_caps on"  # fmt: skip


def test_camera_check_skips_loopback_devices_and_suggests_one_that_works(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path, module=True, label="vbg camera")
    probed: list[int] = []

    def opens(index: int) -> CameraMode:
        probed.append(index)
        return CameraMode(1280, 720, 30.0, "MJPG")

    check = check_cameras(system="Linux", sysfs=sysfs, opens=opens)
    assert probed == [0] and check.ok
    assert check.line() == "ok    cameras: camera 0 sends 1280x720 at 30 fps (MJPG)"
    wrong = check_cameras(system="Linux", sysfs=sysfs, opens=opens, default="3")
    assert not wrong.ok and "use --source 0" in wrong.line()
    none = check_cameras(system="Linux", sysfs=tmp_path / "nothing", opens=opens)
    assert not none.ok and none.needed and "no /dev/video* camera devices" in none.line()


def test_a_camera_that_sends_fewer_frames_than_asked_is_a_warning(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path, module=True, label="vbg camera")
    slow = check_cameras(
        system="Linux", sysfs=sysfs, opens=lambda index: CameraMode(1280, 720, 10.0, "YUYV")
    )
    assert not slow.ok and not slow.needed  # vbg runs, at the camera's rate
    assert slow.line() == (
        "warn  cameras: camera 0 sends 1280x720 at 10 fps (YUYV), fewer frames than 30 a second. "
        "Fix: ask for a smaller size (--width 640 --height 480) or a lower --fps than 30, or use "
        "another camera"
    )
    asked = check_cameras(
        system="Linux", sysfs=sysfs, opens=lambda index: CameraMode(640, 480, 15.0, ""), fps=15
    )
    assert asked.ok and asked.found == "camera 0 sends 640x480 at 15 fps"


def test_display_is_a_warning_only() -> None:
    check = check_display(system="Linux", env={})
    assert not check.ok and not check.needed
    assert check.line().startswith("warn  display: no DISPLAY") and "--no-preview" in check.line()
    assert check_display(system="Linux", env={"DISPLAY": ":99"}).ok


def test_weights_not_cached_yet_are_a_warning_with_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path))
    check = check_weights("mediapipe_selfie")
    assert not check.ok and not check.needed  # the first run fetches them
    assert check.line().startswith("warn  model weights: mediapipe_selfie is not cached yet")
    assert "vbg models fetch mediapipe_selfie" in check.line()
    missing = check_weights("fcn_resnet50", tmp_path / "w.pth")
    assert not missing.ok and missing.needed and "--weights" in missing.line()


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera")
def test_doctor_on_this_machine_fails_for_the_camera(capsys: pytest.CaptureFixture[str]) -> None:
    vbg_log = logging.getLogger("vbg")  # main() sets up vbg's terminal output: undone after
    saved = list(vbg_log.handlers), vbg_log.level, vbg_log.propagate
    try:
        code = main(["doctor"])
    finally:
        vbg_log.handlers[:], vbg_log.propagate = saved[0], saved[2]
        vbg_log.setLevel(saved[1])
    out = capsys.readouterr().out.splitlines()
    assert code == 1  # no webcam and no v4l2loopback here
    names = [line[6:].split(":")[0] for line in out[:-1]]
    assert names[:2] == ["python", "torch"] and "cameras" in names and "virtual camera" in names
    assert any(line.startswith("FAIL  cameras: camera 0 does not open") for line in out)
    assert out[-1].startswith("vbg run needs: ") and "cameras" in out[-1]
