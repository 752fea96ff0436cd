"""``vbg doctor``: checks what a default ``vbg run`` needs, one line each, with the fix.

Each check returns a :class:`Check`; :func:`run_checks` runs them all. A failed check that the
default run needs (``needed``) makes ``vbg doctor`` exit non-zero.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vbg.config import RunConfig
from vbg.errors import SourceError
from vbg.outputs.sinks import MODPROBE, VIRTUAL_CAMERA_NAME, find_loopback_device, setup_hint
from vbg.sources.capture import CameraSource

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


def _camera_opens(index: int) -> bool:
    """Whether camera ``index`` opens and sends a frame, as ``vbg run --source N`` opens it."""
    try:
        CameraSource(index).close()
    except SourceError:
        return False
    return True


def check_cameras(
    *,
    system: str | None = None,
    sysfs: Path = Path("/sys"),
    opens: Callable[[int], bool] = _camera_opens,
    default: str = RunConfig().source,
) -> Check:
    """Which cameras open and send a frame; the default source must be one of them."""
    system = system or platform.system()
    indices: Sequence[int] = _linux_cameras(sysfs) if system == "Linux" else CAMERA_INDICES
    working = [i for i in indices if opens(i)]
    if not default.isdigit():
        return Check("cameras", True, f"{working or 'none'}; the default source is {default}")
    if int(default) in working:
        others = f" (also {', '.join(map(str, working[1:]))})" if len(working) > 1 else ""
        return Check("cameras", True, f"camera {default} sends frames{others}")
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


def check_weights(model: str = RunConfig().model) -> Check:
    from vbg.segmentation.models import is_cached, model_info

    info = model_info(model)
    if is_cached(info):
        return Check("model weights", True, f"{model} cached in {info.cache_path.parent}")
    if info.family == "mediapipe":
        fix = f"vbg models fetch {model}"
    else:
        fix = (f"run 'vbg models fetch {model}' while online (the first 'vbg run' also "
               "downloads them), or pass --weights FILE")  # fmt: skip
    return Check("model weights", False, f"{model} is not cached ({info.cache_path})", fix)


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


def run_checks() -> list[Check]:
    """Every check, in the order ``vbg doctor`` prints them."""
    checks = [check_python(), check_torch()]
    if checks[-1].ok:
        checks += [check_devices(), check_weights()]
    checks += [check_cameras(), check_virtual_camera(), check_display()]
    return checks
