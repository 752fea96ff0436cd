"""Configs thrown at vbg: TOML files built from the known keys (right and wrong types, boundary
values, NaN, infinities, huge numbers, empty and unicode text), random text, random flags, and a
share of them run end to end through ``main()``. The only outcomes allowed are a run that works
(exit 0, the frames recorded) or one clear line naming the key (with the file) or the flag that
is wrong (exit 2), or one line for a failure that only running finds (exit 1, of a known kind);
never a traceback.

What is right is decided by :data:`RULES`, every rule of a config written down here apart from
vbg/config.py: a rule that config.py loses, or gets wrong at a boundary, disagrees with it, and
``test_a_rule_lost_from_config_py_is_found`` checks that by taking each rule out of config.py in
turn (a mutant) and asking for a disagreement.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import inspect
import io
import logging
import math
import re
import string
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import vbg.config
from conftest import fixture_path
from vbg.commands.cli import _build_parser, build_config, main
from vbg.config import RunConfig, config_from_mapping, read_config_file
from vbg.errors import ConfigError
from vbg.outputs.video import count_frames
from vbg.segmentation.options import MODEL_NAMES

KEYS = [field.name for field in dataclasses.fields(RunConfig)]
LARGEST = 2**63 - 1  # TOML's integers are 64-bit; vbg refuses larger ones as too large

# The rules of a config, one per key ----------------------------------------------------------


class Rule:
    """What a key accepts. ``good`` and ``bad`` are boundary values on either side of the rule;
    ``typical`` draws values of the right type, most of them in range."""

    good: tuple[Any, ...] = ()
    bad: tuple[Any, ...] = ()

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def value(self, given: Any) -> Any:
        """What the RunConfig holds for an accepted ``given``."""
        return given

    def typical(self) -> st.SearchStrategy[Any]:
        return st.sampled_from(self.good)


class Flag(Rule):
    good = (True, False)
    bad = (0, 1, "true", "", 1.0, [True])

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _distinct(values: Iterable[Any]) -> tuple[Any, ...]:
    """``values`` without repeats; 1 and 1.0, 0.0 and -0.0 are different values here."""
    return tuple({(type(v), repr(v)): v for v in values}.values())


class Whole(Rule):
    """A whole number: 0, or ``low`` to ``high`` (even ones only with ``even``)."""

    def __init__(self, low: int, high: int, *, even: bool = False) -> None:
        self.low, self.high, self.even = low, high, even
        step = 2 if even else 1
        self.good = (0, low, low + step, high - step, high)
        bad = [-1, -step, low - step, high + step, LARGEST + 1, 10**30, True, 1.0, "1"]
        bad += [float(low), float(high), str(low)] + ([low + 1, high - 1] if even else [])
        self.bad = _distinct(v for v in bad if not self.accepts(v))

    def accepts(self, value: Any) -> bool:
        if not _whole(value):
            return False
        return value == 0 or (self.low <= value <= self.high and not (self.even and value % 2))

    def typical(self) -> st.SearchStrategy[Any]:
        middle = st.integers(self.low, min(self.high, 4000))
        if self.even:
            middle = middle.map(lambda v: v - v % 2)
        return st.one_of(st.sampled_from(self.good), middle)


class Number(Rule):
    """A number (a whole one too) from ``low`` to ``high``, the ends included unless open; with
    ``zero``, 0 as well ("the source's own")."""

    def __init__(
        self, low: float, high: float, *, high_open: bool = False, zero: bool = False
    ) -> None:
        self.low, self.high, self.high_open, self.zero = low, high, high_open, zero
        below, above = math.nextafter(low, -math.inf), math.nextafter(high, math.inf)
        inside_high = math.nextafter(high, -math.inf)
        good: list[Any] = [low, float(low), math.nextafter(low, math.inf), inside_high]
        good += [int(low), (low + high) / 2]
        good += [] if high_open else [high, float(high), int(high)]
        good += [0, 0.0, -0.0] if zero or low == 0 else []
        bad: list[Any] = [below, above, high, math.nan, -math.nan, math.inf, -math.inf, -1]
        bad += [10**30, LARGEST + 1, 1e308, True, False, "1", "", [1.0]]
        bad += [math.nextafter(0.0, 1.0), low / 2] if zero else []
        self.good = _distinct(v for v in good if self.accepts(v))
        self.bad = _distinct(v for v in bad if not self.accepts(v))

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if _whole(value) and abs(value) > LARGEST:
            return False
        if self.zero and value == 0:
            return True
        return self.low <= value < self.high if self.high_open else self.low <= value <= self.high

    def value(self, given: Any) -> Any:
        return float(given)

    def typical(self) -> st.SearchStrategy[Any]:
        inside = st.floats(self.low, self.high, exclude_max=self.high_open)
        return st.one_of(st.sampled_from(self.good), inside)


class Choice(Rule):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        near = [c.upper() for c in choices] + [choices[0] + " ", " " + choices[-1]]
        self.good = choices
        self.bad = tuple(v for v in [*near, "", "é", 1, True, [choices[0]]] if v not in choices)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices


class Text(Rule):
    """The source: a camera index or a file, any text but the empty one."""

    good = ("0", "3", "clip.mp4", " ", "ünïcødé.mp4", "a/b c.mkv")
    bad = ("", 0, 1.5, True, ["0"])

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value != ""


class FilePath(Rule):
    """A path in quotes; ``""`` is none (``optional``) or the current folder. ``suffixes``: the
    name must end in one of them (any case)."""

    def __init__(self, *, optional: bool, suffixes: tuple[str, ...] = ()) -> None:
        self.optional, self.suffixes = optional, suffixes
        names = [f"out{s}" for s in suffixes] + [f"A.B{s.upper()}" for s in suffixes]
        self.good = tuple(["", *(names or ["x.json", "dir/x.json", "ü ñ.json", "."])])
        wrong_name = ["out.avi", "out", ".mkv", "out.mkv.", "out.mkv ", "mkv"] if suffixes else []
        self.bad = tuple([*wrong_name, 0, True, 1.5, ["x"]])

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if value == "" or not self.suffixes:
            return True
        return Path(value).expanduser().suffix.lower() in self.suffixes

    def value(self, given: Any) -> Any:
        if given == "":
            return None if self.optional else Path(".")
        return Path(given).expanduser()


class BackgroundSpec(Rule):
    """none, blur, blur:STRENGTH (1 to 200), color:#RRGGBB (or colour:, the # optional), or any
    other text, a path, whose file is checked only when it is opened."""

    good = (
        "blur", " BLUR ", "none", "None", "blur:1", "blur:200", "blur:1e2", "blur: 35.5",
        "color:#00B140", "colour:00b140", "Color: #ABCDEF ", "beach.jpg", "ü/", "#00B140",
    )  # fmt: skip
    bad = (
        "", "  ", "\t", "blur:0.999", "blur:200.001", "blur:0", "blur:nan", "blur:inf", "blur:",
        "blur:x", "color:#12345", "color:#1234567", "color:", "color:#GGGGGG", "colour:red",
        1, True, ["blur"],
    )  # fmt: skip

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = value.strip()
        lower = text.lower()
        if not text:
            return False
        if lower.startswith("blur:"):
            try:
                strength = float(lower[len("blur:") :])
            except ValueError:
                return False
            return 1 <= strength <= 200
        if lower.startswith(("color:", "colour:")):
            colour = text.split(":", 1)[1].strip()
            return re.fullmatch(r"#?[0-9a-fA-F]{6}", colour) is not None
        return True


RULES: dict[str, Rule] = {
    "source": Text(),
    "loop": Flag(),
    "background": BackgroundSpec(),
    "model": Choice("auto", *MODEL_NAMES),
    "weights": FilePath(optional=True),
    "device": Choice("auto", "cpu", "cuda", "mps"),
    "precision": Choice("auto", "float32", "float16"),
    "inference_size": Whole(32, 2048),
    "crop": Choice("auto", "on", "off"),
    "sync": Choice("auto", "on", "off"),
    "mask_smoothing": Number(0, 1, high_open=True),
    "hysteresis": Number(0, 0.5, high_open=True),
    "propagate": Flag(),
    "refine": Flag(),
    "edge_contrast": Number(1, 10),
    "feather": Number(0, 50),
    "skip_still": Flag(),
    "blur_weighted": Flag(),
    "light_wrap": Number(0, 1),
    "width": Whole(16, 7680, even=True),
    "height": Whole(16, 7680, even=True),
    "fps": Number(1, 240, zero=True),
    "virtual_cam": Flag(),
    "preview": Flag(),
    "record": FilePath(optional=True, suffixes=(".mkv", ".mp4", ".m4v", ".mov")),
    "record_dir": FilePath(optional=False),
    "mirror": Flag(),
    "max_frames": Whole(1, LARGEST),
    "stats": FilePath(optional=True),
    "overwrite": Flag(),
}
PAIRED = ("width", "height")  # both or neither: a size, or the source's own


def wrong_keys(values: Mapping[str, Any]) -> set[str]:
    """The keys of ``values`` that a config must refuse (an empty set: a valid config)."""
    wrong = {
        key for key, value in values.items() if key not in RULES or not RULES[key].accepts(value)
    }
    sizes = [values.get(key, 0) for key in PAIRED]
    if all(_whole(size) for size in sizes):
        for key, size, other in zip(PAIRED, sizes, reversed(sizes), strict=True):
            if size and not other:
                wrong.add(key)
    return wrong


def expected_config(values: Mapping[str, Any]) -> RunConfig:
    """The RunConfig a valid ``values`` gives."""
    return dataclasses.replace(
        RunConfig(), **{key: RULES[key].value(value) for key, value in values.items()}
    )


def test_every_key_has_a_rule() -> None:
    assert set(RULES) == set(KEYS)
    for key, rule in RULES.items():
        assert rule.good and rule.bad, key
        assert all(rule.accepts(v) for v in rule.good) and not any(map(rule.accepts, rule.bad))


# How an error names the key -------------------------------------------------------------------

_QUOTED = r"""('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""  # as Python's repr() writes it
_NAMED_IN_FILE = re.compile(rf": (?:unknown key {_QUOTED}|'(\w+)'[ :.]|unexpected table \[(.+)\];)")


def key_named(message: str, origin: str) -> str:
    """The key a config error is about, from ``ORIGIN: 'key' must ...``, ``ORIGIN: unknown key
    'key'`` or ``ORIGIN: unexpected table [key]`` (a key with a line break in it written as
    Python writes it, so that the message stays one line); fails for a message of another
    form."""
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"{origin}: "), message
    match = _NAMED_IN_FILE.match(message, len(origin))
    assert match is not None, message
    unknown, known, table = match.groups()
    if unknown is not None:
        return str(ast.literal_eval(unknown))
    if known is not None:
        return str(known)
    with contextlib.suppress(ValueError, SyntaxError):  # a table's name is written as it is
        written = ast.literal_eval(table)  # when printable, else as Python's repr() writes it
        if isinstance(written, str) and not written.isprintable():
            return written
    return str(table)


def check_against_rules(
    values: Mapping[str, Any], read: Callable[[Mapping[str, Any]], RunConfig], origin: str
) -> None:
    """``read(values)`` gives the config of ``values`` if RULES take them all, else a ConfigError
    naming one key that RULES refuse."""
    wrong = wrong_keys(values)
    try:
        config = read(values)
    except ConfigError as exc:
        assert wrong, f"{dict(values)} is a valid config, refused: {exc}"
        assert key_named(str(exc), origin) in wrong, f"{exc} (wrong: {sorted(wrong)})"
    else:
        assert not wrong, f"{dict(values)} was accepted; wrong: {sorted(wrong)}"
        assert dataclasses.asdict(config) == dataclasses.asdict(expected_config(values))


# Each rule at its boundaries, and each rule taken out of config.py -----------------------------


def _one_rule_cases() -> list[dict[str, Any]]:
    """Each key alone with each of its boundary values (a size with the other side set), and a
    size alone."""
    cases: list[dict[str, Any]] = []
    for key, rule in RULES.items():
        for value in (*rule.good, *rule.bad):
            case = {key: value}
            if key in PAIRED:
                case[PAIRED[1 - PAIRED.index(key)]] = 720
            cases.append(case)
    cases += [{"width": 1280}, {"height": 720}, {"width": 0, "height": 0}, {"sorce": "0"}]
    cases += [{"fps": 30, "mask_smoothing": 1}, {"table": {"fps": 30}}]
    return cases


ONE_RULE_CASES = _one_rule_cases()


def _mismatches(read: Callable[[Mapping[str, Any]], RunConfig]) -> list[str]:
    """The cases of ONE_RULE_CASES where ``read`` and RULES disagree, each in a line."""
    found = []
    for case in ONE_RULE_CASES:
        try:
            check_against_rules(case, read, "fuzz.toml")
        except (AssertionError, Exception) as exc:  # a mutant may fail in any way
            found.append(f"{case!r}: {type(exc).__name__}: {exc}")
    return found


def test_each_rule_at_its_boundaries() -> None:
    assert _mismatches(functools.partial(config_from_mapping, origin="fuzz.toml")) == []


def _mutants() -> Iterator[tuple[str, types.ModuleType]]:
    """vbg.config with one check taken out or moved at a boundary, as a module of its own: in
    the functions that read and check values, each ``if`` that leads to an error made never true,
    each ``raise`` and each call of a check dropped, each ``<`` made ``<=`` and back. Yields
    what was changed (the line, as written in config.py) and the mutant."""
    source = inspect.getsource(vbg.config)
    tree = ast.parse(source)
    functions = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.name
        in ("_convert", "_fits", "_check_ranges", "_check_background", "config_from_mapping")
    ]
    sites: list[tuple[ast.AST, Callable[[], Callable[[], None]]]] = []
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.If) and _leads_to_error(node):
                sites.append((node, _never(node)))
            elif isinstance(node, ast.Raise) or (
                isinstance(node, ast.Expr) and _leads_to_error(node)
            ):
                sites.append((node, _dropped(node)))
            elif isinstance(node, ast.Compare) and function.name == "_check_ranges":
                for index, op in enumerate(node.ops):
                    if isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE):
                        sites.append((node, _flipped(node, index)))
    for node, mutate in sites:
        what = ast.unparse(node)
        undo = mutate()
        try:
            module = types.ModuleType("vbg_config_mutant")
            sys.modules[module.__name__] = module
            exec(compile(ast.fix_missing_locations(tree), "mutant", "exec"), module.__dict__)
            yield what, module
        finally:
            del sys.modules["vbg_config_mutant"]
            undo()


def _leads_to_error(node: ast.AST) -> bool:
    return any(
        isinstance(inner, ast.Raise)
        or (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id in ("fail", "_check_background")
        )
        for inner in ast.walk(node)
    )


def _never(node: ast.If) -> Callable[[], Callable[[], None]]:
    def mutate() -> Callable[[], None]:
        test, node.test = node.test, ast.Constant(False)
        return lambda: setattr(node, "test", test)

    return mutate


def _dropped(node: ast.stmt) -> Callable[[], Callable[[], None]]:
    """The statement made ``pass`` (its class changed in place, and back)."""

    def mutate() -> Callable[[], None]:
        kind, fields = node.__class__, dict(node.__dict__)
        node.__class__ = ast.Pass

        def undo() -> None:
            node.__class__ = kind
            node.__dict__.update(fields)

        return undo

    return mutate


def _flipped(node: ast.Compare, index: int) -> Callable[[], Callable[[], None]]:
    swap = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}

    def mutate() -> Callable[[], None]:
        op = node.ops[index]
        node.ops[index] = swap[type(op)]()
        return lambda: node.ops.__setitem__(index, op)

    return mutate


# Mutants that RULES cannot tell from config.py: the error names the same key, only its words
# differ. A width without a height that is odd as well: "needs --height too", without "and must
# be an even number".
EQUIVALENT = {
    "if wrong:\n    fail(key, f'{needs}, and {even}')",
    "fail(key, f'{needs}, and {even}')",
}


def test_a_rule_lost_from_config_py_is_found() -> None:
    survivors = []
    count = 0
    for what, mutant in _mutants():
        count += 1
        if not _mismatches(functools.partial(mutant.config_from_mapping, origin="fuzz.toml")):
            survivors.append(what)
    assert count >= 60, count  # every check of config.py made a mutant
    assert set(survivors) <= EQUIVALENT, survivors


# TOML text made from values -------------------------------------------------------------------


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04X}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    assert isinstance(value, list)
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


def to_toml(values: Mapping[str, Any]) -> str:
    """``values`` as a TOML file; a dict becomes a table, after the keys."""
    lines = [
        f"{_toml_string(k)} = {_toml_value(v)}"
        for k, v in values.items()
        if not isinstance(v, dict)
    ]
    for key, table in values.items():
        if isinstance(table, dict):
            lines.append(f"[{_toml_string(key)}]")
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# Strategies: mostly right, some at a boundary, some of the wrong type, a few unknown keys -------

any_value = st.one_of(
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=2),
)


def value_for(key: str, *, good_share: int = 7) -> st.SearchStrategy[Any]:
    """A value for ``key``: of ten draws, ``good_share`` in range, the rest a boundary value
    outside, or anything (mostly of a wrong type)."""
    rule = RULES[key]
    return st.integers(0, 9).flatmap(
        lambda pick: (
            rule.typical()
            if pick < good_share
            else st.sampled_from(rule.bad)
            if pick < good_share + 2
            else any_value
        )
    )


TYPOS = sorted(
    {typo for key in KEYS for typo in (key[:-1], key + "s", key.replace("_", "-"), key.upper())}
    - set(KEYS)
)
unknown_key = st.one_of(
    st.sampled_from(TYPOS),
    st.text(string.ascii_letters + "_-é ", min_size=1, max_size=10).filter(
        lambda k: k not in RULES
    ),
)


@st.composite
def configs(draw: st.DrawFn, keys: list[str] = KEYS, good_share: int = 7) -> dict[str, Any]:
    """A config of up to five known keys, and now and then an unknown key or a table."""
    chosen = draw(st.lists(st.sampled_from(keys), max_size=5, unique=True))
    values = {key: draw(value_for(key, good_share=good_share)) for key in chosen}
    extra = draw(st.integers(0, 19))
    if extra == 0:
        values[draw(unknown_key)] = draw(any_value)
    elif extra == 1:
        values[draw(st.sampled_from(["camera", *keys]))] = {"fps": 30}
    return values


def _corrupt(text: str, at: int, char: str) -> str:
    """``text`` with ``char`` put in at ``at`` (``""``: the character there taken out)."""
    at %= len(text) + 1
    return text[:at] + char + text[at + (0 if char else 1) :]


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(
    configs(), st.integers(0, 9), st.integers(0, 10**6), st.sampled_from(list('"=[]#\n\\ ') + [""])
)
@example({"fps": math.nan}, 9, 0, "")
@example({"fps": 10**400}, 9, 0, "")
@example({"mask_smoothing": math.inf, "source": ""}, 9, 0, "")
@example({"fps": 0.001}, 9, 0, "")
@example({"backgrou\nd": "blur"}, 9, 0, "")
@example({"preci\nsion": {"fps": 30}}, 9, 0, "")
@example({"background": "blur:\n0"}, 9, 0, "")
@example({"background": "color:#12\n"}, 9, 0, "")
def test_random_config_files(
    tmp_path_factory: pytest.TempPathFactory,
    values: dict[str, Any],
    damage: int,
    at: int,
    char: str,
) -> None:
    """Config files as users write them, now and then damaged (one character put in or taken
    out): read and checked as vbg does, with the file's name in every error."""
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    text = to_toml(values)
    if damage == 0:
        text = _corrupt(text, at, char)
    path.write_text(text, encoding="utf-8")
    try:
        read = read_config_file(path)
    except ConfigError as exc:  # a damaged file, or a number TOML cannot hold
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
        if damage != 0 and "table" not in message:
            assert any(_whole(v) and abs(v) > LARGEST for v in values.values()), message
        return
    if damage != 0:
        assert _same(read, values), (read, values)  # the TOML written is the TOML read
    event("damaged" if damage == 0 else "refused" if wrong_keys(read) else "valid")
    check_against_rules(read, functools.partial(config_from_mapping, origin=str(path)), str(path))


@pytest.mark.parametrize("digits", [19, 20, 400, 4300, 5000])
def test_numbers_too_large_are_one_line(tmp_path: Path, digits: int) -> None:
    """TOML holds 64-bit integers; Python's reader takes longer ones until they have more than
    4300 digits, and refuses those with an error of its own."""
    path = tmp_path / "config.toml"
    for key in ("fps", "width", "max_frames"):
        path.write_text(f"{key} = {'9' * digits}\n")
        with pytest.raises(ConfigError) as raised:
            config_from_mapping(read_config_file(path), origin=str(path))
        message = str(raised.value)
        assert str(path) in message and "\n" not in message and len(message) < 300
        if digits <= 4300:
            assert key_named(message, str(path)) == key


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=80))
def test_random_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        values = read_config_file(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        check_against_rules(
            values, functools.partial(config_from_mapping, origin=str(path)), str(path)
        )


# Flags ------------------------------------------------------------------------------------------


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


VALUE_KEYS = [key for key in KEYS if not isinstance(RULES[key], Flag)]
flag_values = st.one_of(
    st.text(string.digits + ".-e_", min_size=1, max_size=6),
    st.sampled_from(
        ["nan", "inf", "-1", "0", "1e9", "abc", "", "#00ff00", "blur:0", "auto", "x.mkv"]
    ),
    st.sampled_from(VALUE_KEYS).flatmap(lambda key: st.sampled_from(RULES[key].good)).map(str),
)
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def _typed(key: str, text: str) -> tuple[bool, Any]:
    """What argparse makes of ``text`` given to ``key``'s flag: (False, None) for a value it
    refuses itself (not a number, not a choice, taken for a flag)."""
    if text.startswith("-") and not _NEGATIVE_NUMBER.match(text):
        return False, None
    default = getattr(RunConfig(), key)
    convert: Callable[[str], Any] = str
    if isinstance(default, int | float) and not isinstance(default, bool):
        convert = type(default)
    try:
        value = convert(text)
    except ValueError:
        return False, None
    if key in ("device", "precision", "crop", "sync") and value not in RULES[key].good:
        return False, None
    return True, value


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


_FLAG_NAMED = re.compile(r"^(?:argument |unknown flag )?(-[-\w.]*)")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(VALUE_KEYS), flag_values),
            st.tuples(st.sampled_from([k for k in KEYS if k not in VALUE_KEYS]), st.booleans()),
        ),
        max_size=4,
    )
)
@example([("fps", "nan")])
@example([("device", "tpu")])
@example([("width", "640")])
@example([("fps", "0.5")])
def test_random_flags(flags: list[tuple[str, Any]]) -> None:
    """Flags as typed: the run's config, or one line that names a flag typed wrong."""
    argv = ["run"]
    values: dict[str, Any] = {}
    refused: set[str] = set()
    for key, typed_value in flags:
        if isinstance(typed_value, bool):
            argv.append(_flag(key) if typed_value else "--no-" + _flag(key)[2:])
            values[key] = typed_value
            continue
        argv += [_flag(key), typed_value]
        ok, value = _typed(key, typed_value)
        if ok:
            values[key] = value
        else:
            refused.add(key)
    wrong = {_flag(key) for key in refused | wrong_keys(values)}
    typed = {text for _, text in flags if isinstance(text, str)}
    with _vbg_messages() as messages:
        try:
            args = _build_parser().parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 2
            [error] = messages  # one message, and it is an error naming the flag
            text = error.getMessage()
            assert error.levelno == logging.ERROR and "\n" not in text, text
            assert text.endswith("--help')") and "Traceback" not in text, text
            match = _FLAG_NAMED.match(text)
            assert match is not None and (match.group(1) in wrong | typed), (text, wrong)
            assert refused, f"{argv} refused by argparse: {text}"
            return
        assert not messages
    assert not refused, f"{argv} taken, though {refused} should not parse"
    try:
        config = build_config(args)
    except ConfigError as exc:  # names a flag given, as typed
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message
        match = _FLAG_NAMED.match(message)
        assert match is not None and match.group(1) in wrong, (message, wrong)
    else:
        assert not wrong, f"{argv} accepted"
        assert dataclasses.asdict(config) == dataclasses.asdict(expected_config(values))


# End to end: the config file given to a real run ---------------------------------------------

# Set by flags, so that every run is 2 frames of the fixture clip with the fast model.
FIXED = {"source", "max_frames", "preview", "virtual_cam", "model", "weights", "device", "record"}
RUN_KEYS = [key for key in KEYS if key not in FIXED]

# What only running finds, for a config that RULES take: one line each, exit 1.
RUNTIME_FAILURES = {
    "a background that is not there": re.compile(r"^Background '.*' does not exist\."),
    "a background that is no picture": re.compile(
        r"^(Background folder '.*' has no (images|picture)|Image '.*' (is not an image|cannot be))"
    ),
    "a background video that does not decode": re.compile(
        r"^Background video '.*' cannot be decoded"
    ),
    "a statistics file that cannot be written": re.compile(r"statistics file '.*'"),
}

# Never a device or another file outside the run's folder: vbg must not replace them, but a
# test is no place to find out.
# What only the files on disk make wrong, for a config that RULES take: one line, exit 2.
REFUSED_FOR_FILES = {
    "an output that exists": re.compile(r"^Will not replace .*: it exists; add --overwrite"),
    "an output that is an input": re.compile(
        r"^The .* '.*' is the (source|background|config file);"
    ),
    "the recording and the statistics in one file": re.compile(
        r"^The recording and the statistics file both name"
    ),
}

run_paths = st.sampled_from(
    ["s.json", "", "missing/s.json", ".", "/", "ü ñ.json", "/proc/vbg-stats.json", "out.mkv"]
    + ["config.toml"]
)
run_backgrounds = st.sampled_from(
    ["blur", "none", "blur:1", "blur:200", "color:#00B140", "beach.jpg", "."]
    + [str(fixture_path("backgrounds", "architecture-5082700_1280.jpg"))]
)


@st.composite
def run_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A config for a run, now and then with a stats file or background that only running
    finds wrong. Kept quick: a frame rate of 15 or more (2 frames paced at 1 fps take 2 s), an
    inference size of 512 or less (a 2048 mask takes the 2 cores 10-20 s)."""
    values = draw(configs(keys=RUN_KEYS, good_share=9))
    if draw(st.integers(0, 3)) == 0:
        values["stats"] = draw(run_paths)
    if draw(st.integers(0, 3)) == 0:
        values["background"] = draw(run_backgrounds)
    if RULES["fps"].accepts(values.get("fps", 0)) and values.get("fps", 0) != 0:
        values["fps"] = max(values["fps"], 15)
    if RULES["inference_size"].accepts(values.get("inference_size", 0)):
        values["inference_size"] = min(values.get("inference_size", 0), 512)
    return values


@contextlib.contextmanager
def _stderr() -> Iterator[io.StringIO]:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        yield err


def _join_vbg_threads() -> None:
    """Wait for a slow model's last run, which a run does not await (so that it does not run on
    into the next example)."""
    for thread in threading.enumerate():
        if thread.name.startswith("vbg-"):
            thread.join(timeout=60)


@settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(run_configs())
@example({})
@example({"fps": 1, "width": 16, "height": 16})
@example({"stats": "missing/s.json"})
@example({"stats": "config.toml"})
@example({"stats": "out.mkv", "overwrite": True})
@example({"inference_size": 512, "crop": "on", "sync": "on", "precision": "float16"})
def test_configs_run_end_to_end(
    tmp_path_factory: pytest.TempPathFactory, fast_weights: Path, values: dict[str, Any]
) -> None:
    """Each config file given to ``vbg run`` for 2 frames: a valid one runs (exit 0) and records
    both frames, an invalid one is one line naming a wrong key (exit 2), and a failure that only
    running finds is one line of a known kind (exit 1); nothing else, never a traceback."""
    folder = tmp_path_factory.mktemp("run")
    (folder / "config.toml").write_text(to_toml(values), encoding="utf-8")
    argv = [
        "--config", "config.toml", "--source", str(fixture_path("clip.mp4")), "--max-frames", "2",
        "--no-preview", "--no-virtual-cam", "--record", "out.mkv",
        "--model", "lraspp_mobilenet_v3_large", "--weights", str(fast_weights), "--device", "cpu",
    ]  # fmt: skip
    with contextlib.chdir(folder), _stderr() as err:
        try:
            code = main(argv)
        finally:
            _join_vbg_threads()
        recorded = count_frames(Path("out.mkv")) if Path("out.mkv").exists() else 0
    said = err.getvalue()
    assert "Traceback" not in said, said
    errors = [line for line in said.splitlines() if line.startswith("vbg: error: ")]
    wrong = wrong_keys(values)
    event(f"exit {code}")
    if code == 0:
        assert not wrong, f"{values} ran, though {sorted(wrong)} are wrong"
        assert errors == [] and recorded == 2, said
        return
    assert len(errors) == 1, said
    message = errors[0].removeprefix("vbg: error: ")
    if code == 2 and wrong:
        assert key_named(message, "config.toml") in wrong, (message, wrong)
        return
    if code == 2:
        kinds = [kind for kind, pattern in REFUSED_FOR_FILES.items() if pattern.search(message)]
        assert kinds, f"{values} refused: {message}"
        event(f"exit 2: {kinds[0]}")
        return
    assert code == 1, said
    assert not wrong, f"{values}: exit 1 for a config that is wrong: {message}"
    kinds = [kind for kind, pattern in RUNTIME_FAILURES.items() if pattern.search(message)]
    assert kinds, f"{values}: exit 1 of an unknown kind: {message}"
    event(f"exit 1: {kinds[0]}")
