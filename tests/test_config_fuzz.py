"""Random configs and flags thrown at the parser: the only outcomes are a valid RunConfig or one
clear line naming the key (with the file) or the flag typed (a ConfigError, or argparse's exit 2
with one error logged), never a traceback."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vbg.commands.cli import _build_parser, build_config
from vbg.config import RunConfig, config_from_mapping, read_config_file
from vbg.errors import ConfigError
from vbg.segmentation.options import MODEL_NAMES

KEYS = [field.name for field in dataclasses.fields(RunConfig)]
FLAGS = ["--" + key.replace("_", "-") for key in KEYS if key != "record_dir"] + ["--record-dir"]

toml_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(string.ascii_lowercase + "_-", min_size=1))


def _valid(config: RunConfig) -> None:
    """What every accepted config promises the rest of vbg."""
    assert config.source and config.device in ("auto", "cpu", "cuda", "mps")
    assert config.model in ("auto", *MODEL_NAMES)
    assert 0 <= config.fps <= 240 and not math.isnan(config.fps)
    assert 0 <= config.mask_smoothing < 1 and 0 <= config.hysteresis < 0.5
    assert 0 <= config.feather <= 50 and 0 <= config.light_wrap <= 1
    assert config.width >= 0 and config.height >= 0 and config.max_frames >= 0
    assert (config.width == 0) == (config.height == 0)
    for key in ("weights", "record", "stats"):
        assert getattr(config, key) is None or isinstance(getattr(config, key), Path)


def _one_clear_line(message: str, named: list[str]) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert any(f"'{name}'" in message for name in named), message


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, toml_values, max_size=6))
@example({"fps": math.nan})
@example({"mask_smoothing": math.inf, "source": ""})
def test_random_config_mappings(values: dict[str, Any]) -> None:
    try:
        config = config_from_mapping(values, origin="fuzz.toml")
    except ConfigError as exc:
        _one_clear_line(str(exc), list(values))
        assert str(exc).startswith("fuzz.toml: ")
    else:
        _valid(config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_random_config_files(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        values = read_config_file(path)
        config = config_from_mapping(values, origin=str(path))
    except ConfigError as exc:
        assert str(path) in str(exc) or "config.toml" in str(exc)
    else:
        _valid(config)


flag_values = st.one_of(
    st.text(string.digits + ".-e", min_size=1, max_size=6),
    st.sampled_from(["nan", "inf", "-1", "0", "1e9", "abc", "", "#00ff00"]),
)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _vbg_messages() -> Iterator[list[logging.LogRecord]]:
    """What vbg logs inside the block (the CLI prints these as ``vbg: error: ...``). A handler
    of its own, since hypothesis runs many examples inside one test (no caplog)."""
    keep = _Keep()
    logger = logging.getLogger("vbg")
    logger.addHandler(keep)
    try:
        yield keep.records
    finally:
        logger.removeHandler(keep)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FLAGS), flag_values), max_size=4))
@example([("--fps", "nan")])
@example([("--device", "tpu")])
def test_random_flags(flags: list[tuple[str, str]]) -> None:
    argv = ["run"] + [part for flag, value in flags for part in (flag, value)]
    with _vbg_messages() as messages:
        try:
            args = _build_parser().parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 2
            [error] = messages  # one message, and it is an error naming where to look
            text = error.getMessage()
            assert error.levelno == logging.ERROR and "\n" not in text, text
            assert text.endswith("--help')") and "Traceback" not in text, text
            return
        assert not messages
    try:
        config = build_config(args)
    except ConfigError as exc:  # names a flag given, as typed
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message
        assert any(message.startswith(f"{flag} ") or message.startswith(f"{flag}: ")
                   for flag, _ in flags), message  # fmt: skip
    else:
        _valid(config)
