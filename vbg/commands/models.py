"""``vbg models``: the models with their input, the speed ``vbg bench`` measured on this machine
and whether their weights are cached; ``vbg models fetch NAME...`` caches weights."""

from __future__ import annotations

from collections.abc import Sequence

from vbg.errors import ConfigError
from vbg.segmentation.models import (
    MODELS,
    auto_model,
    cache_state,
    fetch_model,
    is_cached,
    measured_speeds,
    model_info,
)
from vbg.segmentation.segmenter import choose_device


def fetch_models(names: Sequence[str], sources: Sequence[str]) -> list[str]:
    """Cache each model's weights; one line per model saying where it is, and whether it was
    saved now or was there already (the MediaPipe wheel brings both selfie models at once)."""
    if not names:
        raise ConfigError(
            "Name the models to fetch, for example: vbg models fetch mediapipe_selfie"
        )
    infos = [model_info(name) for name in names]  # an unknown name fails before any download
    before = {info.name: is_cached(info) for info in infos}
    lines = []
    for info in infos:
        path = fetch_model(info.name, sources=sources)
        how = "already cached" if before[info.name] else "saved"
        lines.append(f"{info.name}: {how} {path}")
    return lines


def list_models() -> list[str]:
    """The table ``vbg models`` prints: speeds only where ``vbg bench`` measured them here."""
    speeds = measured_speeds()
    auto, _ = auto_model(choose_device("auto"))
    lines = [f"{'model':<35} {'input':>16}  {'ms/mask here (vbg bench)':<26} weights"]
    for info in MODELS.values():
        measured = [
            f"{row['ms_median']:.1f} {row['device']}"
            for key, row in sorted(speeds.items())
            if key.split("@")[0] == info.name
        ]
        state = cache_state(info)
        if state == "cached":
            weights = "cached"
        else:
            how = "damaged (another SHA-256)" if state == "damaged" else "not cached"
            weights = f"{how}: the first run or 'vbg models fetch {info.name}' gets them"
        name = f"{info.name} (auto)" if info.name == auto else info.name
        speed = ", ".join(measured) or "-"
        lines.append(f"{name:<35} {info.input_label:>16}  {speed:<26} {weights}")
    if not speeds:
        lines.append("No speeds measured on this machine yet: 'vbg bench' measures and keeps them.")
    return lines


def models_command(action: str, names: Sequence[str], sources: Sequence[str]) -> int:
    """``vbg models [list]`` or ``vbg models fetch NAME...``."""
    if action == "fetch":
        lines = fetch_models(names, sources)
    elif action == "list" and not names:
        lines = list_models()
    else:
        raise ConfigError(f"Unknown 'vbg models' action '{action}'; use list or fetch NAME...")
    print("\n".join(lines))
    return 0
