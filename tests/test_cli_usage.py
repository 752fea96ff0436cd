"""The command line as its neighbours behave: a mistyped flag, choice or command gets a "did you
mean", a message names what was typed (the flag, or the key and the file), help texts give their
defaults as ``(default: ...)``, and one exit-code rule holds (vbg.errors): 2 for what was typed
or configured wrong, 1 for what fails at run time."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fixture_path
from vbg.commands.cli import _build_parser, main
from vbg.config import RunConfig, did_you_mean, flag_for
from vbg.segmentation.options import MODEL_NAMES

CLIP = str(fixture_path("clip.mp4"))
# Outputs for the runtime cases, so that nothing but the mistake stops the run.
OUT = ["--no-preview", "--no-virtual-cam", "--record", "{tmp}/o.mkv"]

# (command line, exit code, a fragment of the one-line message); {tmp} is a fresh folder with
# unknown.toml (a mistyped key), bad.toml (a value out of range) and width.toml (width alone).
MISTAKES = [
    # Usage errors, found by the parser: 2.
    (["--mask-smothing", "0.5"], 2,
     "unknown flag --mask-smothing. Did you mean '--mask-smoothing'?"),
    (["process", "in.jpg", "-o", "o.png", "--loop"], 2,
     "--loop is a flag of 'vbg run', not of 'vbg process'"),
    (["process", "--loop"], 2, "--loop is a flag of 'vbg run'"),  # before "input is missing"
    (["--data", "x"], 2, "--data is a flag of 'vbg eval', not of 'vbg run'"),
    (["--bogus"], 2, "unknown flag --bogus"),
    (["proces", "in.jpg", "-o", "o.png"], 2,
     "unknown command 'proces' (choose from run, process"),
    (["-v", "proces"], 2, "Did you mean 'process'?"),
    (["--device", "cdua"], 2,
     "argument --device: invalid choice: 'cdua' (choose from auto, cpu, cuda, mps). "
     "Did you mean 'cuda'?"),
    (["--crop", "of"], 2, "Did you mean 'off'?"),
    (["bench", "--devices", "tpu"], 2, "invalid choice: 'tpu' (choose from auto, cpu, cuda, mps)"),
    (["--width", "abc"], 2, "argument --width: invalid int value: 'abc'"),
    (["--source"], 2, "argument --source: expected one argument"),
    (["process", "in.jpg"], 2, "the following arguments are required: -o/--output"),
    # Bad values, found by the config's checks, named by the flag: 2.
    (["--width", "1281"], 2,
     "--width needs --height too (give both, or neither for the source's own size), and must "
     "be an even number between 16 and 7680, not 1281."),
    (["--width", "1280"], 2, "--width needs --height too"),
    (["--width", "1281", "--height", "720"], 2,
     "--width must be an even number between 16 and 7680, not 1281."),
    (["--mask-smoothing", "1"], 2, "--mask-smoothing must be at least 0 and below 1, not 1.0."),
    (["eval", "--data", "x", "--feather", "99"], 2, "--feather must be between 0 and 50"),
    (["--model", "fcn_resnet5"], 2,
     "--model must be auto or one of fcn_resnet50, fcn_resnet101"),
    (["--model", "fcn_resnet5"], 2, "not 'fcn_resnet5'. Did you mean 'fcn_resnet50'?"),
    (["process", "in.jpg", "-o", "o.png", "--model", "unet"], 2, "(see 'vbg models')"),
    (["bench", "--models", "unet"], 2, "Unknown model 'unet' in --models"),
    (["--background", "color:#zz0000"], 2,
     "--background: colour must be of the form #RRGGBB (for example color:#00B140)"),
    (["--background", "blur:0"], 2,
     "--background: blur strength must be a number from 1 to 200, not 'blur:0'."),
    (["--background", ""], 2, "--background: the background is empty"),
    (["--record", "{tmp}/call.avi"], 2,
     "--record must be a video file name ending in .mkv, .mp4, .m4v, .mov"),
    (["process", CLIP, "-o", "{tmp}/o.png"], 2, "'{tmp}/o.png' is not a video file name"),
    (["process", CLIP, "-o", CLIP], 2, "is the input; give the output another name"),
    # Config files: what is wrong in them is named with the file and the key: 2.
    (["--config", "{tmp}/missing.toml"], 2, "Config file '{tmp}/missing.toml' does not exist"),
    (["--config", "{tmp}/unknown.toml"], 2,
     "{tmp}/unknown.toml: unknown key 'sorce'. Did you mean 'source'?"),
    (["--config", "{tmp}/bad.toml"], 2,
     "{tmp}/bad.toml: 'mask_smoothing' must be at least 0 and below 1, not 1.5."),
    (["--config", "{tmp}/width.toml"], 2, "{tmp}/width.toml: 'width' needs 'height' too"),
    (["--config", "{tmp}/width.toml", "--height", "719"], 2,
     "--height must be an even number between 16 and 7680, not 719."),
    # Runtime failures: the command is well formed, something it names is not there: 1.
    (["process", "{tmp}/missing.jpg", "-o", "{tmp}/o.png"], 1, "missing.jpg"),
    (["--source", "{tmp}/missing.mp4", "--no-preview"], 1, "does not exist"),
    (["--source", CLIP, "--background", "{tmp}/beach.jpg", *OUT], 1,
     "Background '{tmp}/beach.jpg' does not exist"),
    (["--source", CLIP, "--model", "lraspp_mobilenet_v3_large", "--weights", "{tmp}/w.pth", *OUT],
     1, "Weights file '{tmp}/w.pth' does not exist"),
    (["eval", "--data", "{tmp}/nothing"], 1, "does not exist"),
]  # fmt: skip


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "unknown.toml").write_text('sorce = "0"\n')
    (tmp_path / "bad.toml").write_text("mask_smoothing = 1.5\n")
    (tmp_path / "width.toml").write_text("width = 1280\n")
    return tmp_path


@pytest.mark.parametrize(("argv", "code", "fragment"), MISTAKES)
def test_each_mistake_gives_its_exit_code_and_one_line(
    tmp: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    fragment: str,
) -> None:
    argv = [part.replace("{tmp}", str(tmp)) for part in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("vbg: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert fragment.replace("{tmp}", str(tmp)) in err, err


def test_the_exit_status_of_the_installed_command(tmp_path: Path) -> None:
    """The real process: argparse's errors and the config's errors exit 2, a missing camera
    file 1, each with one line and no traceback."""
    cases = [
        (["--mask-smothing", "0.5"], 2),
        (["proces", "in.jpg", "-o", "o.png"], 2),
        (["--background", "color:#zz0000"], 2),
        (["--source", str(tmp_path / "missing.mp4"), "--no-preview"], 1),
    ]
    for argv, code in cases:
        result = subprocess.run(
            [sys.executable, "-m", "vbg", *argv],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        assert result.returncode == code, (argv, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vbg: error: "), result.stderr


def test_help_exits_0() -> None:
    assert main(["--help"]) == 0
    assert main(["process", "--help"]) == 0


def test_abbreviated_flags_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    args = _build_parser().parse_args(["run", "--mask-smooth", "0.5"])  # argparse's prefixes
    assert args.mask_smoothing == 0.5
    assert capsys.readouterr().err == ""


def test_values_from_the_file_and_from_flags_are_named_each_their_way(tmp: Path) -> None:
    """One check of the merged values: a flag wins over the file and is named as the flag."""
    from vbg.commands.cli import build_config
    from vbg.errors import ConfigError

    parser = _build_parser()
    config = build_config(parser.parse_args(["run", "--config", str(tmp / "bad.toml"),
                                             "--mask-smoothing", "0.5"]))  # fmt: skip
    assert config.mask_smoothing == 0.5
    both = ["run", "--config", str(tmp / "width.toml"), "--height", "720"]
    assert build_config(parser.parse_args(both)).width == 1280
    with pytest.raises(ConfigError, match=r"^--light-wrap must be between 0 and 1, not 2\.0\.$"):
        build_config(parser.parse_args(["run", "--config", str(tmp / "width.toml"),
                                        "--height", "720", "--light-wrap", "2"]))  # fmt: skip


def test_did_you_mean() -> None:
    assert did_you_mean("backgroud", ["background", "blur"]) == " Did you mean 'background'?"
    assert did_you_mean("xyz", ["background"]) == ""
    flags = {"mask-smoothing": "--mask-smoothing"}  # compared without the dashes
    assert did_you_mean("mask-smothing", flags) == " Did you mean '--mask-smoothing'?"


def test_the_model_names_without_torch_are_the_models() -> None:
    from vbg.segmentation.models import MODELS

    assert tuple(MODELS) == MODEL_NAMES


def test_every_config_key_has_its_flag() -> None:
    run = _build_parser().commands["run"]
    for field in dataclasses.fields(RunConfig):
        assert flag_for(field.name) in run.flags(), field.name


def _options() -> list[tuple[str, argparse.Action]]:
    commands = _build_parser().commands
    return [
        (name, action)
        for name, command in commands.items()
        for action in command._actions  # argparse keeps no public list
        if action.help != argparse.SUPPRESS
    ]


def test_every_option_has_a_help_text_with_its_default_in_the_usual_form() -> None:
    keys = {field.name for field in dataclasses.fields(RunConfig)}
    no_default = {"record", "stats"}  # None: no file unless one is given
    for command, action in _options():
        where = f"vbg {command} {'/'.join(action.option_strings) or action.dest}"
        text = action.help or ""
        assert len(text.split()) >= 2, where  # not a bare default such as "cpu"
        assert not re.search(r";(\s+[^\s;]+){1,4}$", text), f"{where}: {text}"  # "...; blur"
        if command == "run" and action.dest in keys - no_default:
            assert "(default: " in text, f"{where}: {text}"
        if action.choices is not None and action.metavar is not None:  # listed in the text
            assert all(str(choice) in text for choice in action.choices), f"{where}: {text}"


def test_help_texts_that_were_asked_for() -> None:
    run = _build_parser().commands["run"]
    helps = {flag: action.help or "" for action in run._actions for flag in action.option_strings}
    assert ".tflite" in helps["--weights"] and ".pth" in helps["--weights"]
    assert "(default: auto" in helps["--model"] and "vbg models" in helps["--model"]
    assert "mediapipe_selfie_landscape on a CPU" in helps["--model"]
    assert helps["--mask-smoothing"].endswith(f"(default: {RunConfig().mask_smoothing:g})")
    assert helps["--background"].endswith("(default: blur)")
    assert _build_parser().commands["doctor"].description
