"""Run configuration: one frozen dataclass, validated once.

The CLI builds a :class:`RunConfig` from a TOML file (``configs/default.toml`` documents every key)
plus command-line flags; core code only ever sees the validated dataclass, never a dict or an
argparse namespace.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from vbg.errors import BackgroundError, ConfigError
from vbg.mask_filters import MaskOptions
from vbg.segmentation.options import AUTO_MODEL, DEVICES, MODEL_NAMES, MODES, PRECISIONS


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``vbg run`` needs. Zero means "automatic" for sizes, rates and limits."""

    source: str = "0"  # camera index, or a video or image file
    loop: bool = False  # repeat a file source forever
    background: str = "blur"  # image, folder, video, blur[:STRENGTH], color:#RRGGBB, none
    model: str = "auto"  # auto: fcn_resnet50 on a GPU, mediapipe_selfie_landscape on a CPU
    weights: Path | None = None  # local state dict; None: the torchvision weights API
    device: str = "auto"
    precision: str = "auto"  # auto (float32), float32 or float16
    inference_size: int = 0  # short side of the model input; 0: the model's default
    crop: str = "auto"  # the model looks at the person(s): auto (where it pays), on, off
    sync: str = "auto"  # frames wait for their own mask: auto (while the model keeps up), on, off
    # The mask filters (vbg.mask_filters.MaskOptions holds their defaults).
    mask_smoothing: float = MaskOptions.smoothing  # motion-aware, where the picture is still
    hysteresis: float = MaskOptions.hysteresis  # near 0.5, hold until the mask moves this much
    propagate: bool = MaskOptions.propagate  # move the mask along the flow between results
    refine: bool = MaskOptions.refine  # guided upsampling: edges follow the frame's edges
    edge_contrast: float = MaskOptions.edge_contrast  # a steeper room side: no glow of the room
    feather: float = MaskOptions.feather  # soften the mask edge (Gaussian sigma, pixels)
    skip_still: bool = True  # reuse the mask while the picture does not change (less CPU)
    blur_weighted: bool = True  # blur backgrounds without the person's colours (no halo)
    light_wrap: float = 0.0  # let this much background light wrap the person's edge, [0, 1]
    width: int = 0  # 0: the source's own (cameras are asked for 1280)
    height: int = 0  # 0: the source's own (cameras are asked for 720)
    fps: float = 0.0  # 0: the source's own (cameras are asked for 30)
    virtual_cam: bool = True
    preview: bool = True
    record: Path | None = None
    record_dir: Path = Path(".")  # where the preview's record and snapshot keys write
    mirror: bool = False
    max_frames: int = 0  # stop after this many output frames; 0: run until quit
    stats: Path | None = None  # JSON statistics written at exit
    overwrite: bool = False  # replace existing output files (record, stats, vbg process's -o)

    @property
    def mask_options(self) -> MaskOptions:
        """The mask filters' settings."""
        return MaskOptions(
            smoothing=self.mask_smoothing,
            hysteresis=self.hysteresis,
            propagate=self.propagate,
            refine=self.refine,
            edge_contrast=self.edge_contrast,
            feather=self.feather,
        )

    @property
    def camera_index(self) -> int | None:
        """The camera index when the source is a camera, else None."""
        return int(self.source) if self.source.isdigit() else None


_PATH_KEYS = {"weights", "record", "stats", "record_dir"}
_OPTIONAL_PATH_KEYS = {"weights", "record", "stats"}
MODEL_CHOICES = (AUTO_MODEL, *MODEL_NAMES)


def _field_types() -> dict[str, type]:
    types: dict[str, type] = {}
    for field in dataclasses.fields(RunConfig):
        default = field.default
        types[field.name] = Path if field.name in _PATH_KEYS else type(default)
    return types


def did_you_mean(word: str, known: Iterable[str] | Mapping[str, str]) -> str:
    """`` Did you mean 'X'?`` for the message about a mistyped ``word``, or ``""`` when nothing
    in ``known`` is close (difflib): the one wording of vbg's suggestions, for config keys,
    values, flags and commands. ``known`` may map each name compared to what is suggested (a
    flag without its dashes to the flag)."""
    close = difflib.get_close_matches(word, list(known), n=1)
    if not close:
        return ""
    meant = known[close[0]] if isinstance(known, Mapping) else close[0]
    return f" Did you mean '{meant}'?"


def flag_for(key: str) -> str:
    """The ``vbg run`` flag that sets config key ``key`` (``mask_smoothing`` ->
    ``--mask-smoothing``)."""
    return "--" + key.replace("_", "-")


class _Names:
    """How a message names a key: by its flag (``--mask-smoothing``) when the value came from the
    command line, else as ``FILE: 'mask_smoothing'``."""

    def __init__(self, origin: str, flags: Collection[str]) -> None:
        self.origin = origin
        self.flags = flags

    def __call__(self, key: str) -> str:
        return flag_for(key) if key in self.flags else f"{self.origin}: '{key}'"

    def beside(self, key: str, other: str) -> str:
        """``other``, a key that was not given, named the way ``key`` was given."""
        return flag_for(other) if key in self.flags else f"'{other}'"


def _convert(key: str, value: Any, want: type, where: str) -> Any:
    if want is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, not {value!r}.")
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}.")
        return _fits(value, where)
    if want is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}.")
        return float(_fits(value, where) if isinstance(value, int) else value)
    if want is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path in quotes, not {value!r}.")
        if value == "":
            return None if key in _OPTIONAL_PATH_KEYS else Path(".")
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be text in quotes, not {value!r}.")
    return value


def _fits(value: int, where: str) -> int:
    """``value`` if it fits in TOML's 64-bit integers (Python's reader takes longer ones)."""
    if not -(2**63) <= value < 2**63:
        raise ConfigError(
            f"{where} is far too large a number ({value.bit_length()} bits); "
            "see configs/default.toml for its range."
        )
    return value


def _check_ranges(config: RunConfig, name: _Names) -> None:
    def fail(key: str, rule: str, hint: str = "") -> None:
        raise ConfigError(f"{name(key)} {rule}, not {getattr(config, key)!r}.{hint}")

    for key, choices in (
        ("device", DEVICES), ("precision", PRECISIONS), ("crop", MODES), ("sync", MODES)
    ):  # fmt: skip
        value = getattr(config, key)
        if value not in choices:
            fail(key, "must be one of " + ", ".join(choices), did_you_mean(value, choices))
    if config.model not in MODEL_CHOICES:
        rule = f"must be {AUTO_MODEL} or one of {', '.join(MODEL_NAMES)} (see 'vbg models')"
        fail("model", rule, did_you_mean(config.model, MODEL_CHOICES))
    _check_background(config.background, name("background"))
    if not config.source:
        fail("source", "must be a camera index or a file path")
    for key in ("width", "height", "max_frames", "inference_size"):
        if getattr(config, key) < 0:
            fail(key, "must be 0 or more")
    if config.inference_size and not 32 <= config.inference_size <= 2048:
        fail("inference_size", "must be between 32 and 2048 (or 0 for the model's default)")
    even = "must be an even number between 16 and 7680"
    for key, other in (("width", "height"), ("height", "width")):
        value = getattr(config, key)
        wrong = value and (value < 16 or value > 7680 or value % 2)
        if value and not getattr(config, other):
            both = "give both, or neither for the source's own size"
            needs = f"needs {name.beside(key, other)} too ({both})"
            if wrong:
                fail(key, f"{needs}, and {even}")
            raise ConfigError(f"{name(key)} {needs}.")
        if wrong:
            fail(key, even)
    if not (config.fps == 0 or 1 <= config.fps <= 240):  # written so that NaN fails too
        fail("fps", "must be 0 (the source's own) or between 1 and 240")
    if not 0.0 <= config.mask_smoothing < 1.0:
        fail("mask_smoothing", "must be at least 0 and below 1")
    if not 0.0 <= config.hysteresis < 0.5:
        fail("hysteresis", "must be at least 0 and below 0.5")
    if not 1.0 <= config.edge_contrast <= 10.0:
        fail("edge_contrast", "must be between 1 and 10")
    if not 0.0 <= config.feather <= 50.0:
        fail("feather", "must be between 0 and 50 pixels")
    if not 0.0 <= config.light_wrap <= 1.0:
        fail("light_wrap", "must be between 0 and 1")
    if config.record is not None:
        from vbg.outputs.video import VIDEO_FORMATS  # brings PyAV: only for a recording

        if config.record.suffix.lower() not in VIDEO_FORMATS:
            raise ConfigError(
                f"{name('record')} must be a video file name ending in "
                f"{', '.join(VIDEO_FORMATS)} (.mkv plays even if vbg is killed), "
                f"not '{config.record}'."
            )


def _check_background(spec: str, where: str) -> None:
    """The spec's form (a blur strength, a colour); whether its file exists is found when it is
    opened, as for a source."""
    # Imported here: it brings OpenCV and NumPy, which 'vbg --help' does without.
    from vbg.compositing.backgrounds import parse_spec

    try:
        parse_spec(spec)
    except BackgroundError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_from_mapping(
    values: Mapping[str, Any], origin: str = "config", *, flags: Collection[str] = ()
) -> RunConfig:
    """Validate ``values`` (TOML keys or CLI overrides) into a :class:`RunConfig`.

    ``origin`` names where the values came from (a config file), so an error can point at it;
    ``flags`` are the keys whose values came from command-line flags, which an error names by the
    flag instead (``mask_smoothing`` -> ``--mask-smoothing``).
    Raises :class:`ConfigError` for an unknown key, a wrong type or an out-of-range value.
    """
    name = _Names(origin, flags)
    types = _field_types()
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types:
            # !r: a key with a line break in it (TOML allows one) stays on the message's line
            raise ConfigError(f"{origin}: unknown key {key!r}.{did_you_mean(key, sorted(types))}")
        converted[key] = _convert(key, value, types[key], name(key))
    config = RunConfig(**converted)
    _check_ranges(config, name)
    return config


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file into a plain mapping of keys (validated later).

    Raises :class:`ConfigError` when the file is missing or not valid TOML.
    """
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"Config file '{path}' does not exist. Check the path given to --config."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file '{path}' cannot be read: {exc}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file '{path}' is not valid TOML: {exc}.") from exc
    except ValueError as exc:  # tomllib's int() refuses a number of more than 4300 digits
        reason = str(exc).split(":")[0]
        raise ConfigError(
            f"Config file '{path}' is not valid TOML: a value in it cannot be read ({reason})."
        ) from exc
    for key, value in values.items():
        if isinstance(value, dict):
            raise ConfigError(
                f"{path}: unexpected table [{key if key.isprintable() else repr(key)}]; "
                "vbg config keys are top-level, "
                "see configs/default.toml."
            )
    return values
