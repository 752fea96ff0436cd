"""Person segmentation with torchvision's VOC-label models (the Segmenter stage).

Pure stage: arrays in, arrays out, no threads and no I/O beyond loading weights once.
The model sees the frame at reduced resolution (``inference_size`` is its short side), normalised
as torchvision's ``COCO_WITH_VOC_LABELS_V1`` transforms do (RGB in [0, 1], ImageNet mean and std);
the mask is the softmax probability of the VOC "person" class.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchvision.models import WeightsEnum, get_model_weights
from torchvision.models import segmentation as tv_segmentation

from vbg.errors import ModelError

Frame = np.ndarray  # H x W x 3 uint8, BGR
Mask = np.ndarray  # H x W float32 in [0, 1], 1 = person

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model vbg can run, with the figures ``vbg models`` shows."""

    name: str
    inference_size: int  # default short side of the model input, chosen for live use
    cpu_ms: int  # measured ms per mask at that size, 2-core x86 CPU (benchmarks/models.py)
    builder: Callable[..., torch.nn.Module]

    @property
    def weights(self) -> WeightsEnum:
        """The torchvision weights with the 21 VOC labels (person = index 15)."""
        return get_model_weights(self.name).COCO_WITH_VOC_LABELS_V1  # type: ignore[attr-defined,no-any-return]

    @property
    def cache_path(self) -> Path:
        """Where torchvision's weights API caches this model's weights file."""
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.weights.url)

    @property
    def has_aux(self) -> bool:
        """Whether the pretrained state dict has an auxiliary classifier."""
        return not self.name.startswith("lraspp")


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("fcn_resnet50", 144, 400, tv_segmentation.fcn_resnet50),
        ModelInfo("fcn_resnet101", 144, 680, tv_segmentation.fcn_resnet101),
        ModelInfo("deeplabv3_resnet50", 144, 420, tv_segmentation.deeplabv3_resnet50),
        ModelInfo("deeplabv3_resnet101", 144, 620, tv_segmentation.deeplabv3_resnet101),
        ModelInfo(
            "deeplabv3_mobilenet_v3_large", 256, 175, tv_segmentation.deeplabv3_mobilenet_v3_large
        ),
        ModelInfo("lraspp_mobilenet_v3_large", 256, 87, tv_segmentation.lraspp_mobilenet_v3_large),
    )
}


def model_info(name: str) -> ModelInfo:
    """Look up a model by name; raises :class:`ModelError` naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"Unknown model '{name}'. Choose one of: {', '.join(MODELS)} (see 'vbg models')."
        ) from None


def choose_device(requested: str) -> torch.device:
    """Resolve ``auto|cpu|cuda|mps`` to a torch device (auto: mps, then cuda, then cpu)."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if requested == "auto":
        if mps_ok:
            return torch.device("mps")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            "--device cuda was asked for, but torch sees no CUDA GPU. Use --device auto."
        )
    if requested == "mps" and not mps_ok:
        raise ModelError(
            "--device mps was asked for, but torch sees no Apple GPU. Use --device auto."
        )
    if requested not in ("cpu", "cuda", "mps"):
        raise ModelError(f"Unknown device '{requested}'. Use auto, cpu, cuda or mps.")
    return torch.device(requested)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(
            f"Weights file '{path}' does not exist. Check the path given to --weights."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(
            f"Weights file '{path}' is not a PyTorch state dict that can be loaded safely "
            f"({type(exc).__name__}). Pass a file saved with torch.save(model.state_dict(), PATH)."
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(
            f"Weights file '{path}' does not hold a state dict of tensors. "
            "Pass a file saved with torch.save(model.state_dict(), PATH)."
        )
    return state


def _download_state_dict(info: ModelInfo) -> dict[str, torch.Tensor]:
    weights = info.weights
    if not info.cache_path.is_file():
        print(
            f"vbg: downloading {info.name} weights to {info.cache_path} (first run only)...",
            file=sys.stderr,
        )
    try:
        return weights.get_state_dict(progress=sys.stderr.isatty(), check_hash=True)  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise ModelError(
            f"Could not download the {info.name} weights from {weights.url} ({exc}). "
            "Connect to the internet once so they are cached, or pass --weights PATH "
            "with a local state dict."
        ) from exc


def build_model(name: str, weights: Path | None = None) -> torch.nn.Module:
    """Build model ``name`` with its weights, in eval mode on the CPU.

    ``weights`` is a local state dict (loaded with ``weights_only=True``); without it the
    torchvision weights API downloads and caches the COCO_WITH_VOC_LABELS_V1 weights.
    """
    info = model_info(name)
    state = _read_state_dict(weights) if weights else _download_state_dict(info)
    aux = any(key.startswith("aux_classifier.") for key in state)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": 21}
    if info.has_aux:
        kwargs["aux_loss"] = aux
    model = info.builder(**kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        source = f"'{weights}'" if weights else "the downloaded file"
        raise ModelError(
            f"The weights in {source} do not fit model '{name}'; they were saved from another "
            "model. Pass --model with the model they belong to."
        ) from exc
    if aux:
        model.aux_classifier = None  # type: ignore[assignment]  # vbg uses only the main head; this saves a third of the work
    return model.eval()


class Segmenter:
    """Turns a Frame into a person Mask with a torchvision VOC-label model.

    ``model`` is passed in (built by :func:`build_model`), so tests can use any weights.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device,
        inference_size: int,
        person_index: int = 15,
        name: str = "",
    ) -> None:
        self.name = name
        self.device = device
        self.inference_size = inference_size
        self.person_index = person_index
        self.model = model.to(device).eval()
        self._mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(_STD, device=device).view(1, 3, 1, 1) * 255.0

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input for a frame of that size: short side scaled."""
        scale = self.inference_size / min(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    @torch.inference_mode()
    def predict(self, frame: Frame) -> Mask:
        """Person probability at the model's input resolution.

        frame: H x W x 3 uint8 BGR. Returns h x w float32 in [0, 1], where (w, h) is
        :meth:`input_size`.
        """
        height, width = frame.shape[:2]
        small = cv2.resize(frame, self.input_size(width, height), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        batch = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).unsqueeze(0).float()
        batch = (batch - self._mean) / self._std
        logits = self.model(batch)["out"]
        person = logits.softmax(dim=1)[0, self.person_index]
        return person.float().cpu().numpy()

    def segment(self, frame: Frame) -> Mask:
        """Person probability at frame size: frame H x W x 3 uint8 BGR -> H x W float32."""
        height, width = frame.shape[:2]
        return upsample_mask(self.predict(frame), width, height)


def upsample_mask(mask: Mask, width: int, height: int) -> Mask:
    """Resize a low-resolution Mask (h x w float32) to width x height, bilinear."""
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


class TemporalSmoother:
    """Running average of successive masks, so the edge does not flicker.

    ``weight`` is the share of the previous smoothed mask in each update (0 disables it).
    Masks of a different size restart the average.
    """

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self._state: Mask | None = None

    def update(self, mask: Mask) -> Mask:
        """Blend ``mask`` (h x w float32) into the running average and return the average."""
        if self.weight <= 0 or self._state is None or self._state.shape != mask.shape:
            self._state = mask.astype(np.float32, copy=True)
        else:
            cv2.addWeighted(self._state, self.weight, mask, 1.0 - self.weight, 0.0, dst=self._state)
        return self._state.copy()


def load_segmenter(
    name: str, *, weights: Path | None, device: str, inference_size: int = 0
) -> Segmenter:
    """Build the named model on the chosen device, ready to segment frames."""
    info = model_info(name)
    torch_device = choose_device(device)
    model = build_model(name, weights)
    person = info.weights.meta["categories"].index("person")
    return Segmenter(
        model,
        device=torch_device,
        inference_size=inference_size or info.inference_size,
        person_index=person,
        name=name,
    )
