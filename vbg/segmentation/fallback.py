"""A segmenter that moves to the CPU, once, when its model fails on a GPU."""

from __future__ import annotations

import logging
from collections.abc import Callable

from vbg.images import Frame, Mask
from vbg.segmentation.segmenter import Segmenter, SegmenterWrapper

log = logging.getLogger("vbg")


class FallbackSegmenter(SegmenterWrapper):
    """Runs ``segmenter``; when it raises on a device other than the CPU (out of GPU memory, a
    driver error), builds the same model on the CPU with ``on_cpu`` and uses that from then on.

    A failure on the CPU, or a second failure, is raised as it is. ``fell_back`` says why the
    model moved (None while it has not).
    """

    def __init__(self, segmenter: Segmenter, on_cpu: Callable[[], Segmenter]) -> None:
        super().__init__(segmenter)
        self._on_cpu = on_cpu
        self.fell_back: str | None = None

    def predict(self, frame: Frame) -> Mask | None:
        try:
            return self.inner.predict(frame)
        except Exception as exc:  # CUDA or MPS out of memory, a driver error: RuntimeError
            if self.inner.device.type == "cpu" or self.fell_back is not None:
                raise
            failed = self.inner.device.type
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.inner = self._on_cpu()
            self.fell_back = f"{failed} failed: {reason}"
            log.warning(
                "The model failed on %s (%s); running it on the CPU from now on.", failed, reason
            )
            return self.inner.predict(frame)
