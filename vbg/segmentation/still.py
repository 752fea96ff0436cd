"""A segmenter that skips frames of a still scene: a still picture costs little CPU."""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from vbg.images import Frame, Mask, grey
from vbg.segmentation.segmenter import Segmenter, SegmenterWrapper

STILL_SIZE = (64, 36)  # frames are compared at this size to tell a still scene
STILL_THRESHOLD = 0.5  # mean grey difference (0-255) below which a frame counts as unchanged
STILL_REFRESH = 1.0  # a still scene is still segmented again this often (seconds)


class StillSceneGate(SegmenterWrapper):
    """Runs ``segmenter`` only on frames that differ from the one it last saw, or when that was
    ``refresh`` seconds ago or more (by ``clock``); for the frames in between, :meth:`predict`
    returns None (keep the last mask) and counts them in :attr:`skipped`."""

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        threshold: float = STILL_THRESHOLD,
        refresh: float = STILL_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(segmenter)
        self.threshold = threshold
        self.refresh = refresh
        self._clock = clock
        self._last: tuple[float, np.ndarray] | None = None
        self.skipped = 0

    def still(self, frame: Frame) -> bool:
        """Whether ``frame`` (H x W x 3 uint8 BGR) barely differs from the frame last segmented,
        and that was recently. Remembers ``frame`` as the last one when it does not."""
        now = self._clock()
        tiny = grey(frame, *STILL_SIZE)
        last = self._last
        if (
            last is not None
            and now - last[0] < self.refresh
            and float(cv2.absdiff(tiny, last[1]).mean()) < self.threshold
        ):
            return True
        self._last = (now, tiny)
        return False

    def reset(self) -> None:
        self._last = None
        super().reset()

    def predict(self, frame: Frame) -> Mask | None:
        if self.still(frame):
            self.skipped += 1
            return None
        return self.inner.predict(frame)
