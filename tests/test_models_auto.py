"""model = "auto": the model that fits the device (devices faked), fetched on first use, said in
one line; ``vbg doctor`` checks the run it is given; ``vbg models`` shows what was measured here
and ``vbg models fetch`` reports every model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import fixture_path
from vbg.commands.cli import main
from vbg.commands.doctor import run_checks
from vbg.commands.frame_path import chosen_model
from vbg.config import RunConfig
from vbg.errors import ModelError
from vbg.segmentation import models
from vbg.segmentation.models import MODELS, is_cached, save_speeds
from vbg.segmentation.segmenter import load_segmenter


def _devices(monkeypatch: pytest.MonkeyPatch, *, cuda: bool = False, mps: bool = False) -> None:
    """Make torch see a CUDA GPU and/or an Apple GPU (nothing runs on them in these tests)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "device", "model"),
    [
        (False, False, "auto", "mediapipe_selfie_landscape"),
        (True, False, "auto", "fcn_resnet50"),
        (False, True, "auto", "fcn_resnet50"),
        (True, False, "cpu", "mediapipe_selfie_landscape"),  # --device cpu on a GPU machine
    ],
)
def test_auto_picks_the_model_that_fits_the_device(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, device: str, model: str
) -> None:
    _devices(monkeypatch, cuda=cuda, mps=mps)
    name, why = chosen_model(RunConfig(device=device))
    assert name == model
    assert ("no GPU" in why) == (model == "mediapipe_selfie_landscape")
    assert chosen_model(RunConfig(model="deeplabv3_resnet50")) == (
        "deeplabv3_resnet50",
        "asked for",
    )


def test_auto_with_a_weights_file_takes_the_model_of_the_file(
    monkeypatch: pytest.MonkeyPatch, model_cache: Path, tmp_path: Path
) -> None:
    _devices(monkeypatch)
    selfie = model_cache / MODELS["mediapipe_selfie"].file
    assert chosen_model(RunConfig(weights=selfie))[0] == "mediapipe_selfie"  # by its checksum
    other = tmp_path / "my_model.tflite"
    other.write_bytes(b"TFL3")
    assert chosen_model(RunConfig(weights=other))[0] == "mediapipe_selfie_landscape"
    assert chosen_model(RunConfig(weights=tmp_path / "w.pth"))[0] == "fcn_resnet50"


def test_process_says_in_one_line_which_model_it_chose_and_why(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = fixture_path("photos", "images", "doctor_saxon.jpg")
    assert main(["process", str(photo), "-o", str(tmp_path / "out.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("vbg: model:")] == [
        "vbg: model: mediapipe_selfie_landscape (auto: no GPU: fcn_resnet50 would make only 1-3 "
        "masks/s on a CPU; --model fcn_resnet50 to use it anyway)"
    ]
    assert (tmp_path / "out.png").is_file()


def _serve_from(monkeypatch: pytest.MonkeyPatch, cache: Path, calls: list[str]) -> None:
    """Every fetch source answers from ``cache`` (the real files), counting the calls."""

    def installed(info: models.ModelInfo) -> bytes:
        calls.append(info.name)
        return (cache / info.file).read_bytes()

    def offline(info: models.ModelInfo) -> bytes:
        raise LookupError("no network")

    monkeypatch.setitem(models._SOURCES, "installed", installed)
    monkeypatch.setitem(models._SOURCES, "storage", offline)
    monkeypatch.setitem(models._SOURCES, "wheel", offline)


def test_a_mediapipe_model_is_fetched_on_first_use(
    model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    _serve_from(monkeypatch, model_cache, calls)
    info = MODELS["mediapipe_selfie_landscape"]
    assert not is_cached(info)
    segmenter = load_segmenter(info.name, weights=None, device="cpu")
    assert segmenter.name == info.name and is_cached(info) and calls == [info.name]
    load_segmenter(info.name, weights=None, device="cpu")
    assert calls == [info.name]  # the second run takes the cached file


def test_offline_first_use_is_one_clear_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    for source in models._SOURCES:
        monkeypatch.setitem(models._SOURCES, source, lambda info: (_ for _ in ()).throw(
            LookupError("network unreachable")))  # fmt: skip
    with pytest.raises(ModelError, match="Could not fetch mediapipe_selfie_landscape"):
        load_segmenter("mediapipe_selfie_landscape", weights=None, device="cpu")
    photo = fixture_path("photos", "images", "doctor_saxon.jpg")
    assert main(["process", str(photo), "-o", str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vbg: error: Could not fetch mediapipe_selfie_landscape")
    assert "network unreachable" in err[-1] and not (tmp_path / "out.png").exists()


def test_models_fetch_reports_every_model(
    model_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    _serve_from(monkeypatch, model_cache, [])
    names = ["mediapipe_selfie", "mediapipe_selfie_landscape"]
    assert main(["models", "fetch", *names]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{name}: saved {tmp_path / 'cache' / MODELS[name].file}" for name in names]
    assert main(["models", "fetch", *names]) == 0
    assert [line.split(":")[1].split()[:2] for line in capsys.readouterr().out.splitlines()] == [
        ["already", "cached"],
        ["already", "cached"],
    ]


def test_models_shows_only_speeds_measured_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    _devices(monkeypatch)
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out[1:-1]}
    assert set(rows) == set(MODELS) and all(" - " in row for row in rows.values())
    assert "(auto)" in rows["mediapipe_selfie_landscape"] and "vbg bench" in out[-1]
    save_speeds([{"model": "mediapipe_selfie_landscape", "device": "cpu", "ms_median": 9.87}])
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out[1:]}
    assert "9.9 cpu" in rows["mediapipe_selfie_landscape"] and " - " in rows["fcn_resnet50"]


def _doctor(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = main(["doctor", *argv])
    lines = capsys.readouterr().out.splitlines()
    return code, {line[6:].split(":")[0]: line for line in lines[:-1]}


def test_doctor_checks_the_run_it_is_given(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "vbg.toml"
    config.write_text("virtual_cam = false\npreview = false\n")
    clip = str(fixture_path("clip.mp4"))
    argv = ["--config", str(config), "--model", "mediapipe_selfie", "--source", clip]
    code, lines = _doctor(argv, capsys)
    assert code == 0, lines
    assert lines["model"] == "ok    model: mediapipe_selfie on cpu (as asked)"
    assert lines["model weights"].startswith("ok    model weights: mediapipe_selfie cached")
    assert lines["source"] == f"ok    source: {clip} opens"
    assert "virtual camera" not in lines and "display" not in lines and "cameras" not in lines
    code, lines = _doctor(["--config", str(config), "--source", str(tmp_path / "no.mp4")], capsys)
    assert code == 1 and lines["source"].startswith("FAIL  source: Source ")
    assert "does not exist" in lines["source"]


def test_doctor_without_flags_checks_what_plain_vbg_uses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path))
    _devices(monkeypatch, cuda=True)
    checks = {check.name: check for check in run_checks()}
    assert checks["model"].found == (
        "fcn_resnet50 on cuda (auto: a CUDA GPU runs it fast enough to keep the mask fresh)"
    )
    assert {"cameras", "virtual camera", "display", "background"} <= set(checks)
    _devices(monkeypatch)
    checks = {check.name: check for check in run_checks()}
    assert checks["model"].found.startswith("mediapipe_selfie_landscape on cpu (auto: no GPU")
    assert checks["model weights"].needed is False  # not cached yet: the first run fetches it
