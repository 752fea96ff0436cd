"""The Compositor stage: blend a Frame onto a Background with a Mask.

Pure stage (no threads, no I/O). The blend runs in OpenCV's ``blendLinear`` on uint8 images with
float32 weights, so no full-size float image is allocated per frame; the inverse weights are
computed once per new mask, not once per frame.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from vbg.backgrounds import Background, PassThrough

Frame = np.ndarray  # H x W x 3 uint8, BGR
Mask = np.ndarray  # H x W float32 in [0, 1], 1 = person


def composite(frame: Frame, mask: Mask, background: Frame, inverse: Mask | None = None) -> Frame:
    """``frame * mask + background * (1 - mask)`` per pixel, rounded to uint8.

    frame, background: H x W x 3 uint8 BGR; mask: H x W float32 in [0, 1].
    ``inverse`` (1 - mask) may be passed when the caller already has it.
    """
    if inverse is None:
        inverse = 1.0 - mask
    return cv2.blendLinear(frame, background, mask, inverse)


class Compositor:
    """Holds the current Background and the mirror setting; composites frames with masks.

    The background can be switched from another thread (the preview's keys) while frames are
    composited; the switch takes effect on the next frame.
    """

    def __init__(self, background: Background, *, mirror: bool = False) -> None:
        self._lock = threading.Lock()
        self._background = background
        self.mirror = mirror
        self._mask_id = -1
        self._mask: Mask | None = None
        self._inverse: Mask | None = None

    @property
    def background(self) -> Background:
        with self._lock:
            return self._background

    def set_background(self, background: Background) -> None:
        """Use ``background`` from the next frame on."""
        with self._lock:
            self._background = background

    def _weights(self, mask: Mask) -> tuple[Mask, Mask]:
        if self._mask is not mask or self._inverse is None:
            self._mask = mask
            self._inverse = 1.0 - mask
        return mask, self._inverse

    def composite(self, frame: Frame, mask: Mask | None, t: float) -> Frame:
        """The output frame for ``frame`` (H x W x 3 uint8 BGR) at time ``t`` seconds.

        ``mask`` (H x W float32) is the newest person mask; None (no mask yet) shows only the
        background, so the room is never shown by accident.
        """
        background = self.background.render(frame, t)
        if background is None or isinstance(self.background, PassThrough):
            out = frame
        elif mask is None:
            out = background.copy()  # backgrounds cache their frame; sinks get their own
        else:
            weights, inverse = self._weights(mask)
            out = composite(frame, weights, background, inverse)
        if self.mirror:
            return cv2.flip(out, 1)
        return out
