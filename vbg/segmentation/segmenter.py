"""The Segmenter stage: person masks from torchvision's VOC-label models or MediaPipe's.

Pure stage: arrays in, arrays out, no threads and no I/O beyond loading weights once.
The model sees the frame at reduced resolution (``inference_size`` is its short side), normalised
as torchvision's ``COCO_WITH_VOC_LABELS_V1`` transforms do (RGB in [0, 1], ImageNet mean and std);
the mask is the softmax probability of the VOC "person" class.
"""

from __future__ import annotations

import abc
import io
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from vbg.errors import ModelError
from vbg.segmentation.models import (
    MODELS,
    ModelInfo,
    cache_dir,
    download_state_dict,
    file_sha256,
    mediapipe_file,
    model_info,
    read_state_dict,
    replace_file,
)
from vbg.segmentation.options import PRECISIONS

Frame = np.ndarray  # H x W x 3 uint8, BGR
Mask = np.ndarray  # H x W float32 in [0, 1], 1 = person

if TYPE_CHECKING:
    from vbg.segmentation.tflite_graph import TFLiteGraph

# The .tflite importer, whose checksum names the frozen graphs it made (frozen_path).
IMPORTER = Path(__file__).with_name("tflite_graph.py")
log = logging.getLogger("vbg")

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def half_precision(precision: str, device: torch.device) -> bool:
    """Whether a model runs in float16: ``precision`` auto|float32|float16. Auto is float32
    everywhere: on an H200, float16 was no faster for any model at vbg's input sizes (their
    few milliseconds are launch-bound; benchmarks/cuda_precision.py), and on a CPU it is slow.
    float16 is there to try on other GPUs (``vbg bench --precision float16``)."""
    if precision not in PRECISIONS:
        raise ModelError(f"Unknown precision '{precision}'. Use auto, float32 or float16.")
    return precision == "float16"


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


def build_model(name: str, weights: Path | None = None) -> torch.nn.Module:
    """Build model ``name`` with its weights, in eval mode on the CPU.

    ``weights`` is a local state dict (loaded with ``weights_only=True``); without it the
    torchvision weights API downloads and caches the COCO_WITH_VOC_LABELS_V1 weights.
    """
    info = model_info(name)
    if info.builder is None:
        raise ModelError(f"'{name}' is not a torchvision model.")
    state = read_state_dict(weights) if weights else download_state_dict(info)
    aux = any(key.startswith("aux_classifier.") for key in state)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": 21}
    if not name.startswith("lraspp"):  # the one family without an auxiliary head
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


def checked_mask(mask: Mask, name: str, half: bool) -> Mask:
    """``mask`` (h x w float32 probabilities) clipped to [0, 1], or :class:`ModelError` if any
    value is NaN or infinite: damaged weights give those, and they are not a picture."""
    if not np.isfinite(mask).all():
        why = (
            "its weights are damaged, or float16 overflowed" if half else "its weights are damaged"
        )
        raise ModelError(
            f"The model {name} gave NaN or infinite values instead of a mask ({why}). Pass intact "
            "--weights, or leave out --weights to use the cached file"
            + (", or run with --precision float32." if half else ".")
        )
    return np.clip(mask, 0.0, 1.0, out=mask)


class Segmenter(abc.ABC):
    """Turns a Frame into a person Mask at the model's resolution.

    The contract: :meth:`predict` is called from one thread at a time (the model's); it returns
    the person probability for the frame, or None when it made no new mask for this frame and
    the last one is to be used on (only a wrapper such as the still-scene gate does that).
    ``device`` and ``name`` say where and what runs, for the overlay and the statistics.
    """

    name: str
    device: torch.device
    inference_size: int  # the short side of the model input
    dtype: torch.dtype = torch.float32  # what the model computes in

    @abc.abstractmethod
    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input for a frame of that size."""

    @abc.abstractmethod
    def predict(self, frame: Frame) -> Mask | None:
        """Person probability at the model's input resolution.

        frame: H x W x 3 uint8 BGR. Returns h x w float32 in [0, 1], (w, h) = :meth:`input_size`,
        or None (see the class docstring).
        """

    def reset(self) -> None:
        """Forget what earlier frames showed: the next frame starts a new stream (a photo, a new
        clip). A segmenter that keeps nothing between frames has nothing to do."""
        return None

    def segment(self, frame: Frame) -> Mask:
        """Person probability at frame size: frame H x W x 3 uint8 BGR -> H x W float32."""
        height, width = frame.shape[:2]
        mask = self.predict(frame)
        if mask is None:
            raise ModelError(f"{self.name} made no mask for the frame.")
        return upsample_mask(mask, width, height)


class SegmenterWrapper(Segmenter):
    """A segmenter around another one (:attr:`inner`), with its name, device and input; a
    subclass adds a policy in :meth:`predict` (see vbg.segmentation.fallback and .still)."""

    def __init__(self, inner: Segmenter) -> None:
        self.inner = inner

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self.inner.device

    @property
    def inference_size(self) -> int:  # type: ignore[override]
        return self.inner.inference_size

    @property
    def dtype(self) -> torch.dtype:  # type: ignore[override]
        return self.inner.dtype

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return self.inner.input_size(width, height)

    def predict(self, frame: Frame) -> Mask | None:
        return self.inner.predict(frame)

    def reset(self) -> None:
        self.inner.reset()


def share_cores() -> int:
    """Let a model on the CPU use all cores but one for its intra-op threads, so that capture,
    compositing and the outputs of a live run always have a core and the output keeps the
    camera's rate; returns the count. Process-wide: the live run calls it once it knows the
    model runs on the CPU.

    On 2 cores this is 1 torch thread. Against 2 (benchmarks/threads_ab.py, 3 rounds): with
    fcn_resnet50 the output held 29.7 fps instead of 28.8 and latency p95 fell from 54 to 35 ms
    at the same mask rate; mediapipe_selfie was the same either way."""
    cores = os.cpu_count() or 1
    threads = max(1, min(torch.get_num_threads(), cores - 1))
    torch.set_num_threads(threads)
    return threads


class TorchvisionSegmenter(Segmenter):
    """A torchvision VOC-label model: the short side scaled to ``inference_size``, ImageNet
    normalisation, softmax over the 21 classes, the "person" channel.

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
        half: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.name = name
        self.device = device
        self.inference_size = inference_size
        self.person_index = person_index
        self.dtype = torch.float16 if half else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(device=device, dtype=self.dtype)
        self.model = model.to(memory_format=self.memory_format).eval()  # type: ignore[call-overload]
        self._mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(_STD, device=device).view(1, 3, 1, 1) * 255.0

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        scale = self.inference_size / min(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    @torch.inference_mode()
    def predict(self, frame: Frame) -> Mask:
        height, width = frame.shape[:2]
        small = cv2.resize(frame, self.input_size(width, height), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        batch = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).unsqueeze(0).float()
        batch = ((batch - self._mean) / self._std).to(self.dtype)
        logits = self.model(batch.contiguous(memory_format=self.memory_format))["out"]
        person = logits.float().softmax(dim=1)[0, self.person_index]
        return checked_mask(person.cpu().numpy(), self.name, self.dtype == torch.float16)


def model_file_sha256(path: Path) -> str:
    """The SHA-256 of a model file (computed once per process, :func:`file_sha256`), or
    :class:`ModelError` saying the file cannot be read."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise ModelError(f"Model file '{path}' cannot be read: {exc.strerror}.") from exc


def frozen_path(info: ModelInfo, path: Path, device: torch.device, dtype: torch.dtype) -> Path:
    """Where the frozen graph of model ``info`` from file ``path`` is kept for ``device`` and
    ``dtype``, in the model cache: named after the file's SHA-256, the importer's own
    (vbg/segmentation/tflite_graph.py: a changed importer builds the graph again) and the torch
    version."""
    digest = model_file_sha256(path)[:16]
    importer = file_sha256(IMPORTER)[:8]
    version = torch.__version__.replace("+", "_")
    kind = str(dtype).removeprefix("torch.")
    name = f"{info.name}-{digest}-{importer}-{device.type}-{kind}-torch{version}.pt"
    return cache_dir() / "frozen" / name


def _load_frozen(path: Path, device: torch.device) -> torch.nn.Module | None:
    """The frozen graph kept at ``path`` (made from the same file, device, dtype and torch),
    which saves the start-up its second of reading the .tflite file, tracing and freezing; None
    if there is none or it cannot be loaded (a damaged file is made again)."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            loaded: torch.nn.Module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - any failure: build it again from the .tflite file
        log.debug("frozen graph %s not used (%s); building it again", path, exc)
        return None
    return loaded


def _save_frozen(model: torch.nn.Module, path: Path) -> None:
    """Keep ``model`` at ``path`` if it is a frozen TorchScript graph (whole or not at all); a
    cache that cannot be written is only logged (the next start builds it again)."""
    if not isinstance(model, torch.jit.ScriptModule):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            buffer = io.BytesIO()
            torch.jit.save(model, buffer)
        replace_file(path, buffer.getvalue())
    except (OSError, RuntimeError) as exc:
        log.debug("frozen graph not kept at %s: %s", path, exc)


def _freeze(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """The model traced and frozen for its one input size (about twice as fast on a CPU: the
    per-operator Python work goes and convolutions fuse with their bias and activation).
    Falls back to the model as it is where tracing is not available."""
    example = example.contiguous(memory_format=torch.channels_last)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer notices
            traced = torch.jit.trace(model, example, check_trace=False)
            frozen: torch.nn.Module = torch.jit.freeze(traced.eval())
            frozen(example)
    except Exception:  # noqa: BLE001 - any failure: eager mode is correct, only slower
        return model
    return frozen


class MediaPipeSegmenter(Segmenter):
    """MediaPipe's selfie segmentation run in torch, preprocessed as MediaPipe does it.

    The whole frame is stretched (no aspect kept) to the model's fixed input with bilinear
    sampling that maps the frame's corners onto the input's corners (MediaPipe's
    ImageToTensorCalculator), RGB in [0, 1]; the model's output already is a probability.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device,
        size: tuple[int, int],
        name: str = "",
        half: bool = False,
        frozen: bool = False,
    ) -> None:
        self.name = name
        self.device = device
        self.size = size
        self.inference_size = min(size)
        self.dtype = torch.float16 if half else torch.float32
        example = torch.zeros(1, 3, size[1], size[0], device=device, dtype=self.dtype)
        example = example.contiguous(memory_format=torch.channels_last)
        if frozen:  # a graph frozen before for this device and dtype (frozen_path)
            self.model = model
            with torch.inference_mode():
                for _ in range(2):  # TorchScript optimises a loaded graph on its first runs
                    model(example)
        else:
            # channels-last suits the depthwise convolutions of this MobileNet-like graph.
            model = model.to(device=device, dtype=self.dtype)
            model = model.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
            self.model = _freeze(model, example)
        self._warp_for: tuple[tuple[int, int], np.ndarray] | None = None  # the last frame size's

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return self.size

    def _warp(self, width: int, height: int) -> np.ndarray:
        # Kept for the last frame size only: a tracking crop sends cuts of every size.
        if self._warp_for is None or self._warp_for[0] != (width, height):
            w, h = self.size
            corners = np.array([[0, 0], [width, 0], [0, height]], np.float32)
            warp = cv2.getAffineTransform(corners, np.array([[0, 0], [w, 0], [0, h]], np.float32))
            self._warp_for = ((width, height), warp)
        return self._warp_for[1]

    def _sample(self, frame: Frame) -> np.ndarray:
        """The frame stretched to the model input: H x W x 3 uint8 BGR -> h x w x 3 uint8 BGR."""
        height, width = frame.shape[:2]
        w, h = self.size
        if width % w == 0 and height % h == 0:
            # Whole steps (1280x720 to 256x144): the corner-aligned samples fall on pixels,
            # where bilinear weights are 1 and 0: every k-th pixel, the same bytes, 2x faster.
            # (Whole steps on one side only, 1280x720 to 256x256, gain nothing: measured.)
            return np.ascontiguousarray(frame[:: height // h, :: width // w])
        return cv2.warpAffine(
            frame, self._warp(width, height), self.size, flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )  # fmt: skip

    @torch.inference_mode()
    def predict(self, frame: Frame) -> Mask:
        rgb = cv2.cvtColor(self._sample(frame), cv2.COLOR_BGR2RGB)
        # H x W x 3 uint8 viewed as 1 x 3 x H x W: already channels-last in memory, as the
        # graph takes it (its 1x1 convolutions are matrix products over that memory).
        batch = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).unsqueeze(0)
        batch = batch.to(self.dtype).div_(255.0).contiguous(memory_format=torch.channels_last)
        person = self.model(batch)[0, 0]
        return checked_mask(person.float().cpu().numpy(), self.name, self.dtype == torch.float16)


def _io_shapes(info: ModelInfo) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The NHWC input and output shapes of a MediaPipe model's graph."""
    width, height = info.input_size
    return [(1, height, width, 3)], [(1, height, width, 1)]


def _nhwc(shapes: list[tuple[int, ...]]) -> str:
    return ", ".join("x".join(map(str, shape)) for shape in shapes)


def mediapipe_graph(info: ModelInfo, path: Path) -> TFLiteGraph:
    """The graph in ``path`` (a .tflite file) as model ``info`` runs it, checked first.

    MediaPipe's own file (its SHA-256) is trusted; the other selfie model's file is refused
    saying which ``--model`` it is; any other file is run only if :class:`TFLiteGraph` finds it
    intact (see there: its shapes, and finite outputs from a blank picture) and it takes and
    gives this model's 1 x H x W x 3 and 1 x H x W x 1, else refused with one line.
    """
    others = [o for o in MODELS.values() if o.family == "mediapipe" and o is not info]
    digest = model_file_sha256(path)
    for other in others:
        if digest == other.sha256:
            raise ModelError(
                f"'{path}' is the {other.name} model's file ({other.input_label} input), not "
                f"{info.name}'s: pass --model {other.name} with it."
            )
    # Imported here: a start whose frozen graph is cached reads no .tflite file (and saves the
    # flatbuffer reader's import).
    from vbg.segmentation.tflite_graph import TFLiteGraph

    graph = TFLiteGraph(path, check=digest != info.sha256)  # MediaPipe's own file is trusted
    found = (graph.input_shapes, graph.output_shapes)
    if found != _io_shapes(info):
        fits = [o.name for o in others if found == _io_shapes(o)]
        what = f"pass --model {fits[0]} with it" if fits else "pass a selfie segmentation model"
        inputs, outputs = _io_shapes(info)
        raise ModelError(
            f"'{path}' is not a {info.name} graph: it takes {_nhwc(found[0])} and gives "
            f"{_nhwc(found[1])} (NHWC), where {info.name} takes {_nhwc(inputs)} and gives "
            f"{_nhwc(outputs)}; {what}."
        )
    if digest != info.sha256:
        log.info(
            f"{path.name} is not MediaPipe's {info.file} (another SHA-256); its graph fits "
            f"{info.name}, so it is run as that model (a fine-tuned variant?)"
        )
    return graph


def upsample_mask(mask: Mask, width: int, height: int) -> Mask:
    """Resize a low-resolution Mask (h x w float32) to width x height, bilinear."""
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


def load_segmenter(
    name: str,
    *,
    weights: Path | None,
    device: str,
    inference_size: int = 0,
    precision: str = "auto",
) -> Segmenter:
    """Build the named model on the chosen device, ready to segment frames.

    ``weights``: a state dict (torchvision models) or a .tflite file (MediaPipe models) instead of
    the cached weights. ``inference_size``: the short side of the input (torchvision models only;
    MediaPipe models have a fixed input). ``precision``: see :func:`half_precision`.
    """
    info = model_info(name)
    torch_device = choose_device(device)
    half = half_precision(precision, torch_device)
    if info.family == "mediapipe":
        if inference_size and inference_size != min(info.input_size):
            raise ModelError(
                f"{name} takes a fixed {info.input_label} input; leave out --inference-size."
            )
        path = mediapipe_file(info, weights)
        dtype = torch.float16 if half else torch.float32
        frozen = frozen_path(info, path, torch_device, dtype)
        cached = _load_frozen(frozen, torch_device)
        if cached is not None:
            return MediaPipeSegmenter(
                cached, device=torch_device, size=info.input_size, name=name, half=half,
                frozen=True,
            )  # fmt: skip
        segmenter = MediaPipeSegmenter(
            mediapipe_graph(info, path), device=torch_device, size=info.input_size, name=name,
            half=half,
        )  # fmt: skip
        _save_frozen(segmenter.model, frozen)
        return segmenter
    model = build_model(name, weights)
    person = info.weights.meta["categories"].index("person")
    return TorchvisionSegmenter(
        model,
        device=torch_device,
        inference_size=inference_size or info.inference_size,
        person_index=person,
        name=name,
        half=half,
    )
