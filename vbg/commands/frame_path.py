"""What ``vbg run``, ``vbg process`` and ``vbg eval`` build from a :class:`RunConfig`: the model
and the :class:`FrameProcessor` around it, the same way for all three."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import cv2

from vbg.compositing.backgrounds import open_background
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.processor import FrameProcessor
from vbg.segmentation.crop import TrackingCrop
from vbg.segmentation.fallback import FallbackSegmenter
from vbg.segmentation.models import auto_model, model_info
from vbg.segmentation.options import AUTO_MODEL
from vbg.segmentation.segmenter import Segmenter, choose_device, load_segmenter, share_cores
from vbg.segmentation.still import StillSceneGate

log = logging.getLogger("vbg")
OPENCV_THREADS = 1  # OpenCV's worker threads in a live run: each stage has a thread of its own


def chosen_model(config: RunConfig) -> tuple[str, str]:
    """The model a run of ``config`` uses, and why: the config's, or for ``model = "auto"``
    the one that fits the device it runs on (:func:`auto_model`)."""
    if config.model != AUTO_MODEL:
        return config.model, "asked for"
    return auto_model(choose_device(config.device), config.weights)


def resolve_model(config: RunConfig) -> tuple[RunConfig, str]:
    """``config`` with ``model = "auto"`` replaced by the model it means here, and the line
    that says so ("" when the config named its model)."""
    if config.model != AUTO_MODEL:
        return config, ""
    name, why = chosen_model(config)
    return dataclasses.replace(config, model=name), f"model: {name} (auto: {why})"


def load_model(config: RunConfig, *, device: str | None = None) -> Segmenter:
    """The model the config names, on ``device`` (default: the config's)."""
    on_cpu = device == "cpu"
    return load_segmenter(
        resolve_model(config)[0].model,
        weights=config.weights,
        device=device or config.device,
        inference_size=config.inference_size,
        precision="float32" if on_cpu else config.precision,
    )


def wants_crop(model: str, crop: str) -> bool:
    """Whether ``model`` runs behind a tracking crop for the ``crop`` key (auto|on|off; auto: for
    the models where it was measured to pay, see :attr:`ModelInfo.crop`)."""
    return crop == "on" or (crop == "auto" and model_info(model).crop)


def with_crop(segmenter: Segmenter, config: RunConfig) -> Segmenter:
    """``segmenter`` behind a tracking crop when the config asks for one (:func:`wants_crop`)."""
    return TrackingCrop(segmenter) if wants_crop(config.model, config.crop) else segmenter


def live_segmenter(
    segmenter: Segmenter,
    *,
    skip_still: bool,
    on_cpu: Callable[[], Segmenter] | None = None,
    crop: bool = False,
) -> Segmenter:
    """``segmenter`` with what a live run puts around it: a model on the CPU leaves a core for
    the other stages (:func:`share_cores`), ``on_cpu`` (when given) builds the same model on the
    CPU should it fail on a GPU, with ``crop`` the model looks at the person (a tracking crop),
    and with ``skip_still`` a still scene is not segmented again.

    OpenCV's own worker threads are capped at :data:`OPENCV_THREADS`: each stage already has a
    thread of its own, and OpenCV's pool only adds the cost of waking its workers for the small
    images it is given. On a 16-core machine its default pool (one thread per core) took the
    process from 115-126 % to 306-333 % of a core at the same frame and mask rates (H200 machine,
    ``vbg bench``'s paced 720p pipeline), and on 2 cores one thread costs less than two at the
    same rates (benchmarks/half_cpu.py; see the README)."""
    cv2.setNumThreads(min(cv2.getNumThreads(), OPENCV_THREADS))
    if segmenter.device.type == "cpu":
        share_cores()
    if on_cpu is not None:
        segmenter = FallbackSegmenter(segmenter, on_cpu)
    if crop:
        segmenter = TrackingCrop(segmenter)
    return StillSceneGate(segmenter) if skip_still else segmenter


def make_processor(config: RunConfig, *, live: bool) -> FrameProcessor:
    """The frame path for ``config``. ``live`` (``vbg run``) adds what a live run needs: the
    model moves to the CPU if it fails on a GPU, a still scene is not segmented again
    (``skip_still``), and a model on the CPU leaves a core for the other stages.

    The background is opened here; the caller closes ``processor.compositor.background``.
    """
    background = open_background(config.background, blur_weighted=config.blur_weighted)
    try:  # the background first: a wrong file name is found before a model is loaded
        config, choice = resolve_model(config)
        segmenter = load_model(config)
    except BaseException:
        background.close()
        raise
    if choice:
        log.info(choice)
    if live:

        def on_cpu() -> Segmenter:
            share_cores()
            return load_model(config, device="cpu")

        segmenter = live_segmenter(
            segmenter,
            skip_still=config.skip_still,
            on_cpu=on_cpu,
            crop=wants_crop(config.model, config.crop),
        )
    else:
        segmenter = with_crop(segmenter, config)
    compositor = Compositor(background, mirror=config.mirror, light_wrap=config.light_wrap)
    return FrameProcessor(segmenter, compositor, config.mask_options)
