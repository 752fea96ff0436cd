from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vbg.config import RunConfig, config_from_mapping, read_config_file
from vbg.errors import ConfigError

DEFAULT_TOML = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def test_default_toml_documents_every_key_with_its_default() -> None:
    values = read_config_file(DEFAULT_TOML)
    assert set(values) == {f.name for f in dataclasses.fields(RunConfig)}
    assert config_from_mapping(values, origin="default.toml") == RunConfig()


def test_values_are_converted_and_kept() -> None:
    config = config_from_mapping(
        {"source": "clip.mp4", "record": "out.mp4", "fps": 25, "width": 640, "height": 360}
    )
    assert config.record == Path("out.mp4")
    assert config.fps == 25.0 and isinstance(config.fps, float)
    assert (config.width, config.height) == (640, 360)
    assert config.weights is None and config.camera_index is None
    assert RunConfig().camera_index == 0


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match="unknown key 'backgroud'.*Did you mean 'background'"):
        config_from_mapping({"backgroud": "blur"}, origin="my.toml")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"preview": "yes"}, "'preview' must be true or false"),
        ({"width": 640.5, "height": 360}, "'width' must be a whole number"),
        ({"width": 640}, "'width' needs 'height' too"),
        ({"width": 641}, "'width' needs 'height' too .*, and must be an even number"),
        ({"model": "fcn_resnet5"}, "'model' must be auto or one of .*Did you mean 'fcn_resnet50'"),
        ({"background": "color:#zz0000"}, "'background': colour must be of the form #RRGGBB"),
        ({"background": "blur:0"}, "'background': blur strength must be a number from 1 to 200"),
        ({"crop": "of"}, "'crop' must be one of auto, on, off, not 'of'. Did you mean 'off'"),
        ({"width": 641, "height": 360}, "'width' must be an even number"),
        ({"fps": -1}, "'fps' must be 0 .*or between 1 and 240"),
        ({"fps": 0.001}, "'fps' must be 0 .*or between 1 and 240, not 0.001"),
        ({"device": "tpu"}, "'device' must be one of auto, cpu, cuda, mps"),
        ({"mask_smoothing": 1.0}, "'mask_smoothing' must be at least 0 and below 1"),
        ({"inference_size": 8}, "'inference_size' must be between 32 and 2048"),
        ({"record": 5}, "'record' must be a path in quotes"),
        ({"background": 3}, "'background' must be text in quotes"),
    ],
)
def test_wrong_values_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(values, origin="my.toml")


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("source = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(broken)
    table = tmp_path / "table.toml"
    table.write_text("[run]\nsource = '0'\n")
    with pytest.raises(ConfigError, match=r"unexpected table \[run\]"):
        read_config_file(table)


def test_mask_filter_flags_reach_the_config() -> None:
    from vbg.commands.cli import _build_parser, build_config

    args = _build_parser().parse_args(
        ["run", "--no-refine", "--no-propagate", "--feather", "2", "--hysteresis", "0.1",
         "--mask-smoothing", "0.3", "--light-wrap", "0.4", "--no-blur-weighted"]
    )  # fmt: skip
    config = build_config(args)
    options = config.mask_options
    assert (options.refine, options.propagate, options.feather) == (False, False, 2.0)
    assert (options.hysteresis, options.smoothing) == (0.1, 0.3)
    assert config.light_wrap == 0.4 and config.blur_weighted is False
    assert RunConfig().mask_options.refine and RunConfig().mask_options.propagate


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hysteresis": 0.5}, "'hysteresis' must be at least 0 and below 0.5"),
        ({"feather": 80}, "'feather' must be between 0 and 50"),
        ({"light_wrap": 1.5}, "'light_wrap' must be between 0 and 1"),
        ({"refine": "yes"}, "'refine' must be true or false"),
    ],
)
def test_mask_filter_values_are_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(values, origin="my.toml")
