"""Run configuration: one frozen dataclass, validated once.

The CLI builds a :class:`RunConfig` from a TOML file (``configs/default.toml`` documents every key)
plus command-line flags; core code only ever sees the validated dataclass, never a dict or an
argparse namespace.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vbg.errors import ConfigError
from vbg.mask_filters import MaskOptions
from vbg.segmentation.options import DEVICES, MODES, PRECISIONS


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``vbg run`` needs. Zero means "automatic" for sizes, rates and limits."""

    source: str = "0"  # camera index, or a video or image file
    loop: bool = False  # repeat a file source forever
    background: str = "blur"  # image, folder, video, blur[:STRENGTH], color:#RRGGBB, none
    model: str = "fcn_resnet50"
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


def _field_types() -> dict[str, type]:
    types: dict[str, type] = {}
    for field in dataclasses.fields(RunConfig):
        default = field.default
        types[field.name] = Path if field.name in _PATH_KEYS else type(default)
    return types


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _convert(key: str, value: Any, want: type, origin: str) -> Any:
    where = f"{origin}: '{key}'"
    if want is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, not {value!r}.")
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}.")
        return value
    if want is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}.")
        return float(value)
    if want is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path in quotes, not {value!r}.")
        if value == "":
            return None if key in _OPTIONAL_PATH_KEYS else Path(".")
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be text in quotes, not {value!r}.")
    return value


def _check_ranges(config: RunConfig, origin: str) -> None:
    def fail(key: str, rule: str) -> None:
        raise ConfigError(f"{origin}: '{key}' {rule}, not {getattr(config, key)!r}.")

    if config.device not in DEVICES:
        fail("device", "must be one of " + ", ".join(DEVICES))
    if config.precision not in PRECISIONS:
        fail("precision", "must be one of " + ", ".join(PRECISIONS))
    for key in ("crop", "sync"):
        if getattr(config, key) not in MODES:
            fail(key, "must be one of " + ", ".join(MODES))
    if not config.source:
        fail("source", "must be a camera index or a file path")
    for key in ("width", "height", "max_frames", "inference_size"):
        if getattr(config, key) < 0:
            fail(key, "must be 0 or more")
    if config.inference_size and not 32 <= config.inference_size <= 2048:
        fail("inference_size", "must be between 32 and 2048 (or 0 for the model's default)")
    if (config.width == 0) != (config.height == 0):
        fail("width", "and 'height' must be given together")
    for key in ("width", "height"):
        value = getattr(config, key)
        if value and (value < 16 or value > 7680 or value % 2):
            fail(key, "must be an even number between 16 and 7680")
    if not 0 <= config.fps <= 240:  # written so that NaN fails too
        fail("fps", "must be between 0 and 240")
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


def config_from_mapping(values: Mapping[str, Any], origin: str = "config") -> RunConfig:
    """Validate ``values`` (TOML keys or CLI overrides) into a :class:`RunConfig`.

    ``origin`` names where the values came from, so the error can point at it.
    Raises :class:`ConfigError` for an unknown key, a wrong type or an out-of-range value.
    """
    types = _field_types()
    known = sorted(types)
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"{origin}: unknown key '{key}'.{_did_you_mean(key, known)}")
        converted[key] = _convert(key, value, types[key], origin)
    config = RunConfig(**converted)
    _check_ranges(config, origin)
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
    for key, value in values.items():
        if isinstance(value, dict):
            raise ConfigError(
                f"{path}: unexpected table [{key}]; vbg config keys are top-level, "
                "see configs/default.toml."
            )
    return values
