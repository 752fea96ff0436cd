"""The vbg command: bad input gives one clear line and a non-zero exit; process and models work.

Subprocess tests start ``python -m vbg`` with an untrained lraspp model (quick to load) on the
committed clip (tests/fixtures/data/clip.mp4, 320x180, 75 frames)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import decode_video, fixture_path
from vbg.commands.cli import main
from vbg.segmentation.models import MODELS, is_cached

FAST = ["--model", "lraspp_mobilenet_v3_large", "--inference-size", "64", "--device", "cpu"]


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("vbg: error:") and "\n" not in err, err
    assert "Traceback" not in err
    assert message in err, err


def _run_flags(tmp_path: Path) -> list[str]:
    clip = str(fixture_path("clip.mp4"))
    return [
        "--source",
        clip,
        "--no-preview",
        "--no-virtual-cam",
        "--record",
        str(tmp_path / "o.mkv"),
    ]


def test_bad_input_gives_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_weights: Path
) -> None:
    flags = _run_flags(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('sorce = "0"\n')
    photo = str(next(fixture_path("photos", "images").iterdir()))
    cases = [
        (["--source", str(tmp_path / "missing.mp4")], "does not exist"),
        (["--source", str(junk)], "cannot be decoded"),
        ([*flags, "--background", str(tmp_path / "beach.jpg")], "does not exist"),
        ([*flags, "--background", str(junk)], "not an image"),
        ([*flags, "--background", "color:#12"], "#RRGGBB"),
        ([*flags, "--config", str(tmp_path / "missing.toml")], "does not exist"),
        ([*flags, "--config", str(unknown)], "unknown key 'sorce'. Did you mean 'source'?"),
        ([*flags, "--model", "unet"], "--model must be auto or one of fcn_resnet50"),
        ([*flags, "--weights", str(tmp_path / "w.pth")], "does not exist"),
        ([*flags, "--weights", str(junk)], "is not a PyTorch state dict"),
        ([*flags, "--width", "640"], "--width needs --height too"),
        ([*flags, "--width", "abc"], "invalid int value"),
        ([*flags, "--device", "tpu"], "invalid choice"),
        # vbg process and vbg eval check their options with the same code as vbg run.
        (["process", photo, "-o", str(tmp_path / "o.png"), "--inference-size", "-5"],
         "--inference-size must be 0 or more"),
        (["process", photo, "-o", str(tmp_path / "o.png"), "--feather", "99"],
         "--feather must be between 0 and 50"),
        (["process", photo, "-o", str(tmp_path / "o.png"), "--config", str(unknown)],
         "unknown key 'sorce'"),
        (["eval", "--data", str(tmp_path), "--mask-smoothing", "1"],
         "--mask-smoothing must be at least 0 and below 1"),
    ]  # fmt: skip
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
    capsys: pytest.CaptureFixture[str], fast_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = str(fixture_path("clip.mp4"))
    _fails(
        capsys,
        ["--source", clip, "--no-virtual-cam", *FAST, "--weights", str(fast_weights)],
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


def test_quiet_and_verbose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.mp4")
    assert main(["-q", "process", missing, "-o", str(tmp_path / "o.mkv")]) == 1
    assert capsys.readouterr().err.startswith("vbg: error: Input")  # errors still show
    assert main(["process", missing, "-o", str(tmp_path / "o.mkv"), "-v"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vbg: error: Input") and "where it happened" in err  # -v: the trace


def test_process_a_photo_writes_picture_and_mask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_weights: Path
) -> None:
    photo = next(fixture_path("photos", "images").iterdir())
    out, mask = tmp_path / "out.png", tmp_path / "mask.png"
    argv = ["process", str(photo), "-o", str(out), "--background", "color:#0000FF", *FAST]
    assert main([*argv, "--weights", str(fast_weights), "--save-mask", str(mask)]) == 0
    assert f"wrote {out} (1 frame)" in capsys.readouterr().err
    frame = cv2.imread(str(photo))
    written = cv2.imread(str(out))
    alpha = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    assert written.shape == frame.shape and alpha.shape == frame.shape[:2]
    expected = frame * alpha[..., None] + np.array([255, 0, 0]) * (1 - alpha[..., None])
    assert np.abs(written.astype(float) - expected).mean() < 1.5


def test_process_takes_run_s_compositing_options_and_config(
    tmp_path: Path, fast_weights: Path
) -> None:
    photo = next(fixture_path("photos", "images").iterdir())
    config = tmp_path / "vbg.toml"
    config.write_text('background = "color:#0000FF"\nmirror = true\n')
    plain, mirrored = tmp_path / "plain.png", tmp_path / "mirrored.png"
    common = [*FAST, "--weights", str(fast_weights)]
    assert main(["process", str(photo), "-o", str(plain), "--background", "color:#0000FF",
                 *common]) == 0  # fmt: skip
    assert main(["process", str(photo), "-o", str(mirrored), "--config", str(config),
                 *common]) == 0  # fmt: skip
    assert np.array_equal(cv2.imread(str(mirrored)), cv2.flip(cv2.imread(str(plain)), 1))
    # The saved mask lines up with the (mirrored) picture.
    plain_mask, mirrored_mask = tmp_path / "plain_mask.png", tmp_path / "mirrored_mask.png"
    assert main(["process", str(photo), "-o", str(plain), "--save-mask", str(plain_mask),
                 "--overwrite", *common]) == 0  # fmt: skip
    assert main(["process", str(photo), "-o", str(mirrored), "--save-mask", str(mirrored_mask),
                 "--mirror", "--overwrite", *common]) == 0  # fmt: skip
    flipped = cv2.flip(cv2.imread(str(plain_mask), cv2.IMREAD_GRAYSCALE), 1)
    assert np.array_equal(cv2.imread(str(mirrored_mask), cv2.IMREAD_GRAYSCALE), flipped)


def test_process_a_video_frame_by_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_weights: Path
) -> None:
    clip = fixture_path("clip.mp4")
    out, mask = tmp_path / "out.mkv", tmp_path / "mask.mkv"
    argv = ["process", str(clip), "-o", str(out), "--background", "blur", *FAST]
    assert main([*argv, "--weights", str(fast_weights), "--save-mask", str(mask)]) == 0
    err = capsys.readouterr().err
    assert "75/75 frames" in err and f"wrote {out} (75 frames)" in err
    for path in (out, mask):
        frames = decode_video(path)
        assert len(frames) == 75 and frames[0].shape == (180, 320, 3)
        assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) == pytest.approx(29.97, abs=0.01)
    _fails(
        capsys,
        ["process", str(clip), "-o", str(tmp_path / "o.png"), "--weights", str(fast_weights)],
        "not a video file name",
    )


def test_models_lists_every_model_and_whether_it_is_cached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, info in MODELS.items():
        (line,) = [line for line in lines if line.startswith(f"{name} ")]
        assert ("not cached" not in line) == is_cached(info), line


@pytest.mark.skipif(Path("/sys/module/v4l2loopback").exists(), reason="v4l2loopback is loaded here")
def test_without_a_virtual_camera_the_recording_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_weights: Path
) -> None:
    out = tmp_path / "out.mp4"
    argv = ["--source", str(fixture_path("clip.mp4")), "--no-preview", "--record", str(out)]
    assert main([*argv, "--max-frames", "12", *FAST, "--weights", str(fast_weights)]) == 0
    err = capsys.readouterr().err
    assert "modprobe v4l2loopback" in err and "Going on without it" in err
    assert "record to .mkv to keep what was written through a crash" in err  # out.mp4
    assert len(decode_video(out)) == 12


def _start_recording(
    out: Path, weights: Path, *flags: str, **kwargs: object
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vbg", "--source", str(fixture_path("clip.mp4")), "--loop"]
    command += ["--no-preview", "--no-virtual-cam", "--record", str(out), *FAST, *flags]
    return subprocess.Popen([*command, "--weights", str(weights)], text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupt_finalises_the_recording(
    tmp_path: Path, fast_weights: Path, signal_name: str
) -> None:
    out = tmp_path / "out.mp4"
    with _start_recording(out, fast_weights, stderr=subprocess.PIPE) as vbg:
        assert vbg.stderr is not None
        for line in vbg.stderr:  # wait until it runs, then let it record a little
            if line.startswith("vbg: running:"):
                break
        time.sleep(1.0)
        vbg.send_signal(getattr(signal, signal_name))
        try:
            _, err = vbg.communicate(timeout=60)
        finally:
            vbg.kill()
    assert vbg.returncode == 128 + getattr(signal, signal_name)  # 130, 143: as shells say
    assert "stopped" in err and "Traceback" not in err
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    # An MP4 plays only once finalised: every frame recorded is in its index.
    assert frames >= 1 and frames == int(capture.get(cv2.CAP_PROP_FRAME_COUNT))


def test_a_killed_recording_plays_up_to_where_it_was(tmp_path: Path, fast_weights: Path) -> None:
    out = tmp_path / "out.mkv"
    flags = ("--width", "1280", "--height", "720", "--background", "color:#00B140")
    with _start_recording(out, fast_weights, *flags, stderr=subprocess.DEVNULL) as vbg:
        deadline = time.monotonic() + 120  # a hang guard, not a speed threshold
        seen = 0  # frames a player could show while vbg was still recording
        while time.monotonic() < deadline and seen <= 20 and vbg.poll() is None:
            time.sleep(0.2)
            seen = len(decode_video(out)) if out.exists() else 0
        vbg.send_signal(signal.SIGKILL)  # no chance to finalise anything
        vbg.wait(30)
    assert vbg.returncode == -signal.SIGKILL
    frames = decode_video(out)  # FFmpeg's Matroska demuxer and H.264 decoder
    assert len(frames) >= seen > 20  # what was written out before the kill is all still there
    assert all(frame.shape == (720, 1280, 3) for frame in frames)
    assert frames[-1].std() > 10  # a real picture, not a grey decoder error frame
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_help_and_flag_errors_answer_without_loading_torch() -> None:
    # torch takes seconds to import; --help and a mistyped flag must not wait for it.
    script = (
        "import sys\n"
        "from vbg.commands.cli import main\n"
        "for argv in (['--help'], ['process', '--help'], ['--bogus']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "unknown flag --bogus" in result.stderr
