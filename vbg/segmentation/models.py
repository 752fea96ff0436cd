"""The models vbg can run, where their weights live, and ``vbg models fetch``.

Two families:

- **torchvision**: the VOC-label segmentation models (``fcn_resnet50`` and kin). Their weights come
  from the URL torchvision's weights API names, downloaded on first use into torch's cache
  (``~/.cache/torch/hub/checkpoints``, or ``$TORCH_HOME/hub/checkpoints``), or from a local state
  dict (``--weights``). Every file is loaded with ``torch.load(weights_only=True)``, never as a
  full pickle (which runs any code planted in it), and a cached file is loaded only when its
  SHA-256 starts with the hex digits in its name (torch.hub's convention,
  ``fcn_resnet50_coco-1167a1af.pth``); one that does not is downloaded again.
- **mediapipe**: Google's selfie segmentation models (Apache-2.0), read from their .tflite files
  and run in torch (:mod:`vbg.segmentation.tflite_graph`). ``vbg models fetch NAME`` puts the
  file in vbg's cache
  (``~/.cache/vbg/models``, or ``$VBG_CACHE_DIR``): from an installed mediapipe, else from
  MediaPipe's public model storage, else from the mediapipe 0.10.14 wheel on PyPI (downloaded with
  pip, not installed). The file's SHA-256 is checked before it is saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

# torchvision is imported where a torchvision model is used (its builder, its weights): a run
# of a MediaPipe model starts without it (2.4 of 4.4 CPU s of imports, benchmarks/startup.py).
if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

from vbg.errors import ModelError
from vbg.segmentation.options import FETCH_SOURCES

MEDIAPIPE_VERSION = "0.10.14"
MEDIAPIPE_STORAGE = "https://storage.googleapis.com/mediapipe-assets/"
MEDIAPIPE_MEMBER = "mediapipe/modules/selfie_segmentation/"
DOWNLOAD_TIMEOUT = 30.0  # seconds without an answer before a download is given up


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model vbg can run. Its speed on this machine is what ``vbg bench`` measured
    (:func:`measured_speeds`); none is written here, since it depends on the machine."""

    name: str
    family: str  # "torchvision" or "mediapipe"
    inference_size: int = 0  # torchvision: default short side of the model input
    builder: Callable[..., torch.nn.Module] | None = None  # torchvision: the model's constructor
    input_size: tuple[int, int] = (0, 0)  # mediapipe: the fixed (width, height) of the input
    file: str = ""  # mediapipe: the .tflite file name
    sha256: str = ""  # mediapipe: the file's checksum
    crop: bool = False  # the tracking crop is on by default ("crop = auto"): measured to pay

    @property
    def weights(self) -> WeightsEnum:
        """torchvision only: the weights with the 21 VOC labels (person = index 15)."""
        from torchvision.models import get_model_weights

        return get_model_weights(self.name).COCO_WITH_VOC_LABELS_V1  # type: ignore[attr-defined,no-any-return]

    @property
    def cache_path(self) -> Path:
        """Where this model's weights file is cached."""
        if self.family == "mediapipe":
            return cache_dir() / self.file
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.weights.url)

    @property
    def input_label(self) -> str:
        """The model input as ``vbg models`` shows it."""
        if self.family == "mediapipe":
            return f"{self.input_size[0]}x{self.input_size[1]}"
        return f"{self.inference_size} px short side"


def _torchvision(name: str, size: int) -> ModelInfo:
    def builder(**kwargs: Any) -> torch.nn.Module:
        from torchvision.models import segmentation

        return getattr(segmentation, name)(**kwargs)  # type: ignore[no-any-return]

    return ModelInfo(name, "torchvision", inference_size=size, builder=builder)


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        _torchvision("fcn_resnet50", 144),
        _torchvision("fcn_resnet101", 144),
        _torchvision("deeplabv3_resnet50", 144),
        _torchvision("deeplabv3_resnet101", 144),
        _torchvision("deeplabv3_mobilenet_v3_large", 256),
        _torchvision("lraspp_mobilenet_v3_large", 256),
        ModelInfo(
            "mediapipe_selfie",
            "mediapipe",
            input_size=(256, 256),
            file="selfie_segmentation.tflite",
            sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
            crop=True,
        ),
        ModelInfo(
            "mediapipe_selfie_landscape",
            "mediapipe",
            input_size=(256, 144),
            file="selfie_segmentation_landscape.tflite",
            sha256="a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
            crop=True,
        ),
    )
}


GPU_MODEL = "fcn_resnet50"  # the design's model: fresh masks on an Apple GPU or CUDA
CPU_MODEL = "mediapipe_selfie_landscape"  # a fresh mask with every camera frame on 2 CPU cores


def auto_model(device: torch.device, weights: Path | None = None) -> tuple[str, str]:
    """The model ``model = "auto"`` runs on ``device``, and why, in words for the log.

    On a GPU (CUDA, MPS) ``fcn_resnet50``; on a CPU, where it makes 1-3 masks/s and the mask
    shown is up to a second old, ``mediapipe_selfie_landscape`` (see the README's measurements).
    A ``weights`` file decides instead: a .tflite file is a MediaPipe model (the one whose
    checksum it has, else the landscape one), any other file a torchvision state dict."""
    if weights is not None:
        if weights.suffix.lower() == ".tflite":
            digest = _sha256(weights.read_bytes()) if weights.is_file() else ""
            for info in MODELS.values():
                if info.family == "mediapipe" and info.sha256 == digest:
                    return info.name, f"--weights {weights.name} is its .tflite file"
            return CPU_MODEL, f"--weights {weights.name} is a .tflite file"
        return GPU_MODEL, f"--weights {weights.name} is a torchvision state dict"
    if device.type == "cpu":
        return CPU_MODEL, (
            f"no GPU: {GPU_MODEL} would make only 1-3 masks/s on a CPU; "
            "--model fcn_resnet50 to use it anyway"
        )
    kind = "Apple GPU" if device.type == "mps" else "CUDA GPU"
    return GPU_MODEL, f"a {kind} runs it fast enough to keep the mask fresh"


def model_info(name: str) -> ModelInfo:
    """Look up a model by name; raises :class:`ModelError` naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"Unknown model '{name}'. Choose one of: {', '.join(MODELS)} (see 'vbg models')."
        ) from None


def cache_dir() -> Path:
    """vbg's model cache: ``$VBG_CACHE_DIR``, else ``$XDG_CACHE_HOME/vbg/models``."""
    if os.environ.get("VBG_CACHE_DIR"):
        return Path(os.environ["VBG_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vbg" / "models"


log = logging.getLogger("vbg")


# -- torchvision weights -------------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, loaded with ``weights_only=True``."""
    if not path.is_file():
        raise ModelError(
            f"Weights file '{path}' does not exist. Check the path given to --weights."
        )
    return _load_state(path, "Pass a file saved with torch.save(model.state_dict(), PATH).")


def _load_state(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, unpickled with ``weights_only=True`` (tensors and plain
    containers only: a planted pickle's code does not run); ``fix`` ends the error message."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(
            f"Weights file '{path}' is not a PyTorch state dict that can be loaded safely "
            f"({type(exc).__name__}). {fix}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"Weights file '{path}' does not hold a state dict of tensors. {fix}")
    return state


def download_state_dict(info: ModelInfo) -> dict[str, torch.Tensor]:
    """The pretrained weights of a torchvision model: from torch's cache when the file there has
    its SHA-256, else downloaded first (:func:`fetch_torchvision`)."""
    path = fetch_torchvision(info)
    return _load_state(
        path, f"Delete it and run 'vbg models fetch {info.name}', or pass --weights PATH."
    )


def fetch_torchvision(info: ModelInfo) -> Path:
    """Put the torchvision weights in torch's cache (``info.cache_path``) unless an intact copy
    is there; a damaged one (another SHA-256) is downloaded again. The download is torch.hub's,
    which checks the hash prefix before it moves the file in place: a failed download leaves
    the cache as it was. Raises :class:`ModelError` saying what failed and what to do."""
    path, state = info.cache_path, cache_state(info)
    if state == "cached":
        return path
    url = info.weights.url
    if state == "damaged":
        log.warning(
            f"the cached {info.name} weights {path} are damaged (their SHA-256 does not start "
            f"with {_expected_digest(info)}): downloading them again..."
        )
    else:
        log.info(f"downloading {info.name} weights to {path} (first run only)...")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, path, _expected_digest(info))
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = (str(getattr(exc, "reason", exc)).strip() or type(exc).__name__).splitlines()[0]
        what = (
            f"The cached {info.name} weights {path} are damaged (another SHA-256) and could not "
            "be downloaded again"
            if state == "damaged"
            else f"Could not download the {info.name} weights"
        )
        raise ModelError(
            f"{what} from {url} ({reason}). Connect to the internet once so they are "
            "cached, or pass --weights PATH with a local state dict."
        ) from exc
    return path


def _download(url: str, path: Path, hash_prefix: str | None = None) -> None:
    """``url`` to ``path`` with torch's download (its progress bar on a terminal, the SHA-256
    prefix checked), giving up after :data:`DOWNLOAD_TIMEOUT` seconds without an answer: torch
    sets no timeout, and a stalled network would hang the first run for ever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix, progress=sys.stderr.isatty())
    finally:
        socket.setdefaulttimeout(previous)


# -- MediaPipe files -----------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _from_installed(info: ModelInfo) -> bytes:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("mediapipe is not installed")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "modules" / "selfie_segmentation" / info.file
        if path.is_file():
            return path.read_bytes()
    raise LookupError(f"the installed mediapipe has no {info.file}")


def _from_storage(info: ModelInfo) -> bytes:
    """The file from MediaPipe's model storage, with torch's progress bar on a terminal."""
    url = MEDIAPIPE_STORAGE + info.file
    with tempfile.TemporaryDirectory(prefix="vbg-download-") as folder:
        path = Path(folder) / info.file
        try:
            _download(url, path)
        except (urllib.error.URLError, OSError) as exc:
            raise LookupError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
        return path.read_bytes()


def _from_wheel(info: ModelInfo) -> bytes:
    """Download the mediapipe wheel with pip (no install) and read the file out of it."""
    with tempfile.TemporaryDirectory(prefix="vbg-mediapipe-") as folder:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--retries", "1", "--timeout", "20",
            f"mediapipe=={MEDIAPIPE_VERSION}", "-d", folder,
        ]  # fmt: skip
        log.info(f"downloading the mediapipe {MEDIAPIPE_VERSION} wheel with pip (about 35 MB)...")
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        wheels = list(Path(folder).glob("mediapipe-*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise LookupError(f"pip download mediapipe=={MEDIAPIPE_VERSION} failed: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                data = wheel.read(MEDIAPIPE_MEMBER + info.file)
            except KeyError:
                raise LookupError(f"the wheel has no {MEDIAPIPE_MEMBER + info.file}") from None
            # The wheel holds both selfie models: cache the other one too while it is here.
            for other in MODELS.values():
                if other.family == "mediapipe" and other is not info:
                    with contextlib.suppress(KeyError, ModelError):
                        _save_checked(other, wheel.read(MEDIAPIPE_MEMBER + other.file))
        return data


_SOURCES: dict[str, Callable[[ModelInfo], bytes]] = {
    "installed": _from_installed,
    "storage": _from_storage,
    "wheel": _from_wheel,
}


def _save_checked(info: ModelInfo, data: bytes) -> Path:
    digest = _sha256(data)
    if digest != info.sha256:
        raise ModelError(
            f"{info.file}: checksum mismatch (SHA-256 {digest[:16]}..., expected "
            f"{info.sha256[:16]}...); the file was not saved."
        )
    replace_file(info.cache_path, data)
    return info.cache_path


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a ``.partial`` file beside it, renamed
    over it), making its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process for each size and modification time (a
    135 MB file takes about 0.15 s)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _expected_digest(info: ModelInfo) -> str:
    """The SHA-256 the cached file must have: MediaPipe's whole, or for torchvision the hex
    digits that torch.hub's naming puts in the file name (fcn_resnet50_coco-1167a1af.pth ->
    1167a1af), a prefix of it."""
    if info.family == "mediapipe":
        return info.sha256
    match = torch.hub.HASH_REGEX.search(info.cache_path.name)
    return match.group(1) if match else ""


def cache_state(info: ModelInfo) -> str:
    """``"cached"`` (the file is there with its SHA-256), ``"missing"`` or ``"damaged"`` (there,
    but another SHA-256 or unreadable: the next run or ``vbg models fetch`` gets it again)."""
    path = info.cache_path
    if not path.is_file():
        return "missing"
    expected = _expected_digest(info)
    try:
        intact = bool(expected) and file_sha256(path).startswith(expected)
    except OSError:
        intact = False
    return "cached" if intact else "damaged"


def is_cached(info: ModelInfo) -> bool:
    """Whether the model's weights are in the cache and intact (their SHA-256 checked)."""
    return cache_state(info) == "cached"


def fetch_model(name: str, sources: Sequence[str] = FETCH_SOURCES) -> Path:
    """Put the weights of model ``name`` in the cache and return their path.

    MediaPipe files are taken from the first of ``sources`` that has them with the right
    checksum. Raises :class:`ModelError` saying what each source answered.
    """
    info = model_info(name)
    if info.family == "torchvision":
        return fetch_torchvision(info)
    state = cache_state(info)
    if state == "cached":
        return info.cache_path
    if state == "damaged":
        log.warning(
            f"the cached {info.file} is damaged (its SHA-256 is not MediaPipe's): "
            "fetching it again..."
        )
    problems = []
    for source in sources:
        if source not in _SOURCES:
            raise ModelError(f"Unknown source '{source}'; use {', '.join(FETCH_SOURCES)}.")
        try:
            data = _SOURCES[source](info)
            path = _save_checked(info, data)
        except (LookupError, ModelError, OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{source}: {exc}")
            continue
        log.info(f"{name}: saved {path} (from {source})")
        return path
    damaged = (
        f"The cached {info.cache_path} is damaged (another SHA-256) and could not be fetched again"
        if state == "damaged"
        else f"Could not fetch {name}"
    )
    raise ModelError(f"{damaged}. " + "; ".join(problems))


def mediapipe_file(info: ModelInfo, weights: Path | None) -> Path:
    """The .tflite file to run: ``weights`` if given, else the cached one."""
    if weights is not None:
        if not weights.is_file():
            raise ModelError(f"Model file '{weights}' does not exist. Check --weights.")
        return weights
    state = cache_state(info)
    if state == "missing":  # fetched on first use, as torchvision's weights are downloaded
        log.info(f"{info.name} is not cached yet: fetching it (first run only)...")
    if state != "cached":  # a damaged file is fetched again (fetch_model says so)
        return fetch_model(info.name)
    return info.cache_path


# -- speeds measured on this machine -------------------------------------------------------


def speeds_path() -> Path:
    """Where ``vbg bench`` keeps the speeds it measured, for ``vbg models``."""
    return cache_dir() / "speeds.json"


def save_speeds(rows: Sequence[dict[str, Any]]) -> None:
    """Keep ``vbg bench``'s model rows (model, device, ms_median, ...), newest per model and
    device; a cache that cannot be written is only logged (the bench result is printed)."""
    speeds = measured_speeds()
    for row in rows:
        speeds[f"{row['model']}@{row['device']}"] = dict(row, measured=time.strftime("%Y-%m-%d"))
    path = speeds_path()
    try:
        replace_file(path, json.dumps(speeds, indent=1, sort_keys=True).encode())
    except OSError as exc:
        log.warning(f"could not keep the speeds in {path}: {exc}")


def measured_speeds() -> dict[str, dict[str, Any]]:
    """The speeds ``vbg bench`` measured on this machine, by ``MODEL@DEVICE``; empty if none
    (or if the file is unreadable: it is only a cache)."""
    try:
        speeds = json.loads(speeds_path().read_text())
    except (OSError, ValueError):
        return {}
    return speeds if isinstance(speeds, dict) else {}
