"""``vbg doctor``: checks what a ``vbg run`` needs, one line each, with the fix: the run plain
``vbg`` makes, or the one the same ``--config``, ``--model`` and ``--source`` would make.

Each check returns a :class:`Check`; :func:`run_checks` runs them all. A failed check that the
default run needs (``needed``) makes ``vbg doctor`` exit non-zero.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vbg.compositing.backgrounds import open_background
from vbg.config import RunConfig
from vbg.errors import SourceError, VbgError
from vbg.outputs.sinks import MODPROBE, VIRTUAL_CAMERA_NAME, find_loopback_device, setup_hint
from vbg.sources.capture import CAMERA_DEFAULT_FPS, CameraMode, CameraSource, open_source

MIN_PYTHON = (3, 11)
CAMERA_INDICES = range(4)  # probed where the system cannot list its cameras


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of ``vbg doctor``: what was checked, what was found, and the fix if it failed."""

    name: str
    ok: bool
    found: str
    fix: str = ""
    needed: bool = True  # the default run cannot do its job without it

    def line(self) -> str:
        status = "ok  " if self.ok else ("FAIL" if self.needed else "warn")
        text = f"{status}  {self.name}: {self.found}"
        return text if self.ok or not self.fix else f"{text}. Fix: {self.fix}"


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Check("python", ok, version, f"install Python {'.'.join(map(str, MIN_PYTHON))}+")


def check_torch() -> Check:
    try:
        import torch
        import torchvision
    except ImportError as exc:
        return Check("torch", False, f"cannot be imported ({exc})", "pip install -e . again")
    return Check("torch", True, f"torch {torch.__version__}, torchvision {torchvision.__version__}")


def check_devices() -> Check:
    """The devices torch can run the model on (the CPU always works, so this never fails)."""
    import torch

    found = [f"CPU ({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        found += [f"CUDA {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("MPS (Apple GPU)")
    return Check("devices", True, ", ".join(found) + f"; --device auto uses {found[-1]}")


def _linux_cameras(sysfs: Path) -> list[int]:
    """Indices of the real cameras (/dev/videoN not made by v4l2loopback), in order."""
    indices = []
    for node in sorted((sysfs / "class" / "video4linux").glob("video*")):
        if "/devices/virtual/" in str(node.resolve()):
            continue  # a loopback device: an output, not a camera
        suffix = node.name.removeprefix("video")
        if suffix.isdigit():
            indices.append(int(suffix))
    return indices


def _camera_mode(
    index: int, width: int = 0, height: int = 0, fps: float = 0.0
) -> CameraMode | None:
    """What camera ``index`` sends when opened as ``vbg run --source N`` opens it (asked for
    that size and rate), or None when it does not open or sends no frame."""
    try:
        with CameraSource(index, width=width, height=height, fps=fps) as camera:
            return camera.mode
    except SourceError:
        return None


def check_cameras(
    *,
    system: str | None = None,
    sysfs: Path = Path("/sys"),
    opens: Callable[[int], CameraMode | None] = _camera_mode,
    default: str = RunConfig().source,
    fps: float = 0.0,
) -> Check:
    """Which cameras open and send a frame; the default source must be one of them, and is a
    warning where it sends fewer frames a second than ``fps`` asks (0: vbg's 30)."""
    system = system or platform.system()
    indices: Sequence[int] = _linux_cameras(sysfs) if system == "Linux" else CAMERA_INDICES
    modes = {i: mode for i in indices if (mode := opens(i)) is not None}
    working = list(modes)
    if not default.isdigit():
        return Check("cameras", True, f"{working or 'none'}; the default source is {default}")
    if int(default) in working:
        others = f" (also {', '.join(map(str, working[1:]))})" if len(working) > 1 else ""
        mode = modes[int(default)]
        asked = fps or CAMERA_DEFAULT_FPS
        found = f"camera {default} sends {mode}{others}"
        if mode.slower_than(asked):
            fix = (
                f"ask for a smaller size (--width 640 --height 480) or a lower --fps than "
                f"{asked:g}, or use another camera"
            )
            return Check("cameras", False, f"{found}, fewer frames than {asked:g} a second", fix,
                         needed=False)  # fmt: skip
        return Check("cameras", True, found)
    found = f"camera {default} does not open"
    if working:
        fix = f'use --source {working[0]} (or source = "{working[0]}" in a config file)'
    elif system == "Linux" and not indices:
        found += " (no /dev/video* camera devices)"
        fix = "plug in a webcam; check that 'ls /dev/video*' lists it and you are in group video"
    else:
        fix = "plug in a webcam, close other programs using it, or give a video file with --source"
    return Check("cameras", False, found, fix)


def check_virtual_camera(*, system: str | None = None, sysfs: Path = Path("/sys")) -> Check:
    """On Linux: v4l2loopback loaded, a device named "vbg camera", exclusive_caps on.
    Elsewhere: pyvirtualcam can open its backend (OBS Virtual Camera)."""
    system = system or platform.system()
    name = "virtual camera"
    if system != "Linux":
        try:
            import pyvirtualcam

            with pyvirtualcam.Camera(64, 64, 5) as camera:
                device = camera.device
        except Exception as exc:  # pyvirtualcam raises RuntimeError when no backend works
            return Check(name, False, f"cannot be opened ({exc})", setup_hint(system, sysfs))
        return Check(name, True, f"{device} opens")
    module = sysfs / "module" / "v4l2loopback"
    if not module.exists():
        return Check(name, False, "v4l2loopback is not loaded", "install it (Debian/Ubuntu: sudo "
                     f"apt install v4l2loopback-dkms) and run: {MODPROBE}")  # fmt: skip
    device = find_loopback_device(sysfs)
    if device is None:
        return Check(name, False, f"no v4l2loopback device is named '{VIRTUAL_CAMERA_NAME}'",
                     f"sudo modprobe -r v4l2loopback, then {MODPROBE}")  # fmt: skip
    caps = module / "parameters" / "exclusive_caps"
    value = caps.read_text().strip() if caps.exists() else ""
    if not value or not set(value.replace(",", "")) <= {"Y", "1"}:
        return Check(name, False, f"{device} is '{VIRTUAL_CAMERA_NAME}' but exclusive_caps is "
                     f"'{value or 'off'}' (Chrome and Zoom then do not list it)",
                     f"sudo modprobe -r v4l2loopback, then {MODPROBE}")  # fmt: skip
    return Check(name, True, f"{device} is '{VIRTUAL_CAMERA_NAME}', exclusive_caps on")


def check_model(config: RunConfig) -> tuple[Check, str | None]:
    """The model the run would use (``auto`` resolved on this machine's device), and its name;
    None when it cannot be used (an unknown name, a device torch does not see)."""
    from vbg.commands.frame_path import chosen_model
    from vbg.segmentation.models import model_info
    from vbg.segmentation.segmenter import choose_device

    try:
        device = choose_device(config.device)
        name, why = chosen_model(config)
        model_info(name)
    except VbgError as exc:
        return Check("model", False, str(exc), "see 'vbg models' and 'vbg doctor --help'"), None
    auto = f"auto: {why}" if config.model == "auto" else "as asked"
    return Check("model", True, f"{name} on {device.type} ({auto})"), name


def check_weights(model: str, weights: Path | None = None) -> Check:
    """The model's weights: the ``weights`` file if given, else the cache (its SHA-256 checked).
    Weights that are not cached yet, or damaged, are a warning: the first run downloads them."""
    from vbg.segmentation.models import cache_state, model_info

    if weights is not None:
        if weights.is_file():
            return Check("model weights", True, f"{model} from {weights}")
        return Check("model weights", False, f"--weights {weights} does not exist",
                     "check the path, or leave out --weights for the cached weights")  # fmt: skip
    info = model_info(model)
    state = cache_state(info)
    if state == "cached":
        return Check("model weights", True, f"{model} cached in {info.cache_path.parent}")
    what = (
        f"the cached {info.cache_path} is damaged (another SHA-256); the first run downloads "
        "it again"
        if state == "damaged"
        else f"{model} is not cached yet; the first run downloads it"
    )
    return Check(
        "model weights", False, what,
        f"run 'vbg models fetch {model}' while online, or pass --weights FILE", needed=False,
    )  # fmt: skip


def check_file_source(source: str) -> Check:
    """A video or picture file as the source: it opens and gives a frame."""
    try:
        open_source(source, realtime=False).close()
    except VbgError as exc:
        return Check("source", False, str(exc), "give another file or a camera index with --source")
    return Check("source", True, f"{source} opens")


def check_background(config: RunConfig) -> Check:
    """The background opens (a picture, folder or video that can be read; a valid spec)."""
    try:
        open_background(config.background, blur_weighted=config.blur_weighted).close()
    except VbgError as exc:
        return Check("background", False, str(exc), "fix --background (see 'vbg --help')")
    return Check("background", True, config.background)


def check_recording(path: Path) -> Check:
    """The recording's folder exists and can be written."""
    folder = path.expanduser().parent
    if folder.is_dir() and os.access(folder, os.W_OK):
        return Check("recording", True, f"{path} can be written")
    return Check("recording", False, f"cannot write into {folder}",
                 "create the folder or pick another --record path")  # fmt: skip


def check_display(*, system: str | None = None, env: dict[str, str] | None = None) -> Check:
    """A display for the preview window (the run goes on without one)."""
    system = system or platform.system()
    env = dict(os.environ) if env is None else env
    if system != "Linux":
        return Check("display", True, "the desktop", needed=False)
    shown = [f"{key}={env[key]}" for key in ("DISPLAY", "WAYLAND_DISPLAY") if env.get(key)]
    if shown:
        return Check("display", True, ", ".join(shown), needed=False)
    return Check("display", False, "no DISPLAY or WAYLAND_DISPLAY: no preview window",
                 "run vbg from a desktop session, or add --no-preview", needed=False)  # fmt: skip


def run_checks(config: RunConfig | None = None) -> list[Check]:
    """Every check of a run of ``config`` (default: plain ``vbg``), in the order ``vbg doctor``
    prints them: only what that run uses (no virtual camera check with ``virtual_cam = false``)."""
    config = config or RunConfig()
    checks = [check_python(), check_torch()]
    if checks[-1].ok:
        checks.append(check_devices())
        model, name = check_model(config)
        checks.append(model)
        if name is not None:
            checks.append(check_weights(name, config.weights))
    if config.camera_index is not None:
        opens = functools.partial(
            _camera_mode, width=config.width, height=config.height, fps=config.fps
        )
        checks.append(check_cameras(opens=opens, default=config.source, fps=config.fps))
    else:
        checks.append(check_file_source(config.source))
    checks.append(check_background(config))
    if config.virtual_cam:
        checks.append(check_virtual_camera())
    if config.preview:
        checks.append(check_display())
    if config.record is not None:
        checks.append(check_recording(config.record))
    return checks
