"""The vbg command: bad input gives one clear line and a non-zero exit; process and models work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import data_path, decode_video
from vbg.commands.cli import main


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("vbg: error:") and "\n" not in err, err
    assert "Traceback" not in err
    assert message in err, err


def _run_flags(tmp_path: Path) -> list[str]:
    clip = str(data_path("videos", "volcomix_thoughtful-35590.mp4"))
    return [
        "--source",
        clip,
        "--no-preview",
        "--no-virtual-cam",
        "--record",
        str(tmp_path / "o.mp4"),
    ]


def test_bad_input_gives_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fcn_weights: Path
) -> None:
    flags = _run_flags(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('sorce = "0"\n')
    cases = [
        (["--source", str(tmp_path / "missing.mp4")], "does not exist"),
        (["--source", str(junk)], "cannot be decoded"),
        ([*flags, "--background", str(tmp_path / "beach.jpg")], "does not exist"),
        ([*flags, "--background", str(junk)], "not an image OpenCV can decode"),
        ([*flags, "--background", "color:#12"], "#RRGGBB"),
        ([*flags, "--config", str(tmp_path / "missing.toml")], "does not exist"),
        ([*flags, "--config", str(unknown)], "unknown key 'sorce'. Did you mean 'source'?"),
        ([*flags, "--model", "unet"], "Unknown model 'unet'"),
        ([*flags, "--weights", str(tmp_path / "w.pth")], "does not exist"),
        ([*flags, "--weights", str(junk)], "is not a PyTorch state dict"),
        ([*flags, "--width", "640"], "'width' and 'height' must be given together"),
        ([*flags, "--width", "abc"], "invalid int value"),
        ([*flags, "--device", "tpu"], "invalid choice"),
    ]
    for argv, message in cases:
        if argv[0] == "--source" and len(argv) == 2:
            argv = [*argv, "--no-preview"]
        try:
            _fails(capsys, argv, message)
        except SystemExit as exc:  # argparse's own errors: still one line
            assert exc.code == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("vbg: error:") and "\n" not in err and message in err


def test_nothing_to_output_to_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fcn_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = str(data_path("videos", "volcomix_thoughtful-35590.mp4"))
    _fails(
        capsys,
        ["--source", clip, "--no-virtual-cam", "--weights", str(fcn_weights)],
        "Nothing to send the picture to",
    )


def test_the_installed_command_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vbg", "--source", str(tmp_path / "missing.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("vbg: error: Source")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_process_a_photo_writes_picture_and_mask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fcn_weights: Path
) -> None:
    photo = data_path("images", "volcomix_doctor-5871743_640.jpg")
    out, mask = tmp_path / "out.png", tmp_path / "mask.png"
    code = main(
        [
            "process",
            str(photo),
            "-o",
            str(out),
            "--background",
            "color:#0000FF",
            "--weights",
            str(fcn_weights),
            "--device",
            "cpu",
            "--save-mask",
            str(mask),
        ]
    )
    assert code == 0
    frame = cv2.imread(str(photo))
    written = cv2.imread(str(out))
    alpha = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    assert written.shape == frame.shape and alpha.shape == frame.shape[:2]
    expected = frame * alpha[..., None] + np.array([255, 0, 0]) * (1 - alpha[..., None])
    assert np.abs(written.astype(float) - expected).mean() < 1.5


def test_process_a_video_frame_by_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fcn_weights: Path
) -> None:
    clip = data_path("video_gt", "parkour", "parkour.mp4")
    out, mask = tmp_path / "out.mp4", tmp_path / "mask.mp4"
    code = main(
        [
            "process",
            str(clip),
            "-o",
            str(out),
            "--background",
            "blur",
            "--weights",
            str(fcn_weights),
            "--device",
            "cpu",
            "--inference-size",
            "48",
            "--save-mask",
            str(mask),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "100/100 frames" in err and "wrote" in err
    for path in (out, mask):
        capture = cv2.VideoCapture(str(path))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 100
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
            854,
            480,
        )
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24)
    _fails(
        capsys,
        ["process", str(clip), "-o", str(tmp_path / "o.png"), "--weights", str(fcn_weights)],
        "not a video file name",
    )


def test_models_lists_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in (
        "fcn_resnet50",
        "fcn_resnet101",
        "deeplabv3_resnet50",
        "deeplabv3_resnet101",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
    ):
        assert name in out
    assert "cached" in out


@pytest.mark.skipif(Path("/sys/module/v4l2loopback").exists(), reason="v4l2loopback is loaded here")
def test_without_a_virtual_camera_the_recording_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fcn_weights: Path
) -> None:
    clip = str(data_path("videos", "volcomix_thoughtful-35590.mp4"))
    out = tmp_path / "out.mp4"
    code = main(
        [
            "--source",
            clip,
            "--no-preview",
            "--record",
            str(out),
            "--max-frames",
            "12",
            "--weights",
            str(fcn_weights),
            "--inference-size",
            "64",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "modprobe v4l2loopback" in err and "Going on without it" in err
    assert "record to .mkv to keep what was written through a crash" in err  # out.mp4
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupt_finalises_the_recording(
    tmp_path: Path, fcn_weights: Path, signal_name: str
) -> None:
    clip = str(data_path("videos", "volcomix_thoughtful-35590.mp4"))
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "vbg", "--source", clip, "--loop", "--no-preview"]
    command += ["--no-virtual-cam", "--record", str(out), "--weights", str(fcn_weights)]
    with subprocess.Popen(
        [*command, "--inference-size", "64"], stderr=subprocess.PIPE, text=True
    ) as vbg:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 50_000):
            time.sleep(0.2)
        vbg.send_signal(getattr(signal, signal_name))
        try:
            _, err = vbg.communicate(timeout=30)
        finally:
            vbg.kill()
    assert vbg.returncode == 0
    assert "stopped" in err and "Traceback" not in err
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames > 10 and frames == int(capture.get(cv2.CAP_PROP_FRAME_COUNT))


def test_a_killed_recording_plays_up_to_where_it_was(tmp_path: Path, fcn_weights: Path) -> None:
    clip = str(data_path("videos", "volcomix_thoughtful-35590.mp4"))
    out = tmp_path / "out.mkv"
    command = [sys.executable, "-m", "vbg", "--source", clip, "--loop", "--no-preview"]
    command += ["--no-virtual-cam", "--record", str(out), "--weights", str(fcn_weights)]
    with subprocess.Popen([*command, "--inference-size", "64"], stderr=subprocess.DEVNULL) as vbg:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 800_000):
            time.sleep(0.2)
        vbg.send_signal(signal.SIGKILL)  # no chance to finalise anything
        vbg.wait(30)
    assert vbg.returncode == -signal.SIGKILL
    frames = decode_video(out)  # FFmpeg's Matroska demuxer and MPEG-4 decoder
    assert len(frames) > 20  # about 800 kB of 640x360 video at 25 fps
    assert all(frame.shape == (360, 640, 3) for frame in frames)
    assert frames[-1].std() > 10  # a real picture, not a grey decoder error frame
