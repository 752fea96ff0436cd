"""The Compositor stage: blend a Frame onto a Background with a Mask.

Pure stage (no threads, no I/O). The blend is one pass in integers over uint8 images with a uint8
Matte (:func:`composite`, compiled with Numba): no full-size float image is made per frame.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numba
import numpy as np

from vbg.compositing.backgrounds import Background, BlurBackground, PassThrough
from vbg.errors import BackgroundError
from vbg.images import Frame, Mask, Matte, to_matte

log = logging.getLogger("vbg")
WRAP_SIGMA = 8.0  # how far (pixels) background light wraps around the person
_TINY = (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), np.zeros((1, 1, 3), np.uint8))


def composite(frame: Frame, matte: Matte | Mask, background: Frame) -> Frame:
    """``frame * m + background * (1 - m)`` per pixel with ``m = matte / 255``, rounded to uint8.

    frame, background: H x W x 3 uint8 BGR; matte: H x W uint8 (255 = person; a float Mask is
    converted by :func:`to_matte`). Exact: the rounded quotient of the integer sums. Returns a
    new frame.
    """
    if background.shape != frame.shape or matte.shape != frame.shape[:2] or frame.ndim != 3:
        # The compiled pass does not check its indices: refuse what does not line up.
        raise ValueError(
            f"frame {frame.shape}, matte {matte.shape} and background {background.shape} differ"
        )
    out = np.empty_like(frame)
    _blend(np.ascontiguousarray(frame), np.ascontiguousarray(background),
           np.ascontiguousarray(to_matte(matte)), out)  # fmt: skip
    return out


@numba.njit(cache=True, nogil=True)
def _blend(frame: Frame, background: Frame, matte: Matte, out: Frame) -> None:  # pragma: no cover
    """``out`` = round((frame * w + background * (255 - w)) / 255) per channel, w the Matte;
    the division exact in 16-bit integers: (t + (t >> 8)) >> 8 for t = sum + 128."""
    f = frame.reshape(-1)
    b = background.reshape(-1)
    w = matte.reshape(-1)
    o = out.reshape(-1)
    for i in range(w.size):
        weight = np.uint16(w[i])
        rest = np.uint16(255) - weight
        for channel in range(3):
            j = 3 * i + channel
            total = np.uint16(f[j]) * weight + np.uint16(b[j]) * rest + np.uint16(128)
            o[j] = np.uint8((total + (total >> np.uint16(8))) >> np.uint16(8))


def banner(frame: Frame, text: str) -> Frame:
    """A copy of ``frame`` (H x W x 3 uint8 BGR) with ``text`` on a dark strip along the bottom,
    for what every viewer should see (the camera was lost)."""
    out = frame.copy()
    height, width = out.shape[:2]
    scale = max(0.4, height / 720.0)
    strip = max(16, int(36 * scale))
    out[height - strip :] //= 3
    cv2.putText(out, text, (int(12 * scale), height - int(strip * 0.3)), cv2.FONT_HERSHEY_SIMPLEX,
                0.8 * scale, (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)  # fmt: skip
    return out


class Compositor:
    """Holds the current Background and the output settings; composites frames with masks.

    The background can be switched from another thread (the preview's keys) while frames are
    composited; the switch takes effect on the next frame. ``light_wrap`` (0-1) lets the
    background's light spill a little onto the person's edge, for image, video and colour
    backgrounds.

    A background that fails while it is shown (a video that stops decoding) is replaced by the
    one shown before it (or the blurred room), with a message for the user (logged).

    ``mirror`` flips the camera's picture left-right (the person, and the room where the room is
    shown: pass-through, blur), never a picture, video or colour background, so text in a
    background stays readable. Frames and masks come in and stay in the camera's order: the
    composite is made unflipped over the background flipped, and the result flipped once, so a
    still background is flipped once (not per frame) and the mask filters before the compositor
    never see the mirror (turning it on or off is not a jump in the picture they follow).
    """

    def __init__(
        self, background: Background, *, mirror: bool = False, light_wrap: float = 0.0
    ) -> None:
        self._lock = threading.Lock()
        self._background = background
        self._previous: Background = BlurBackground()
        self.mirror = mirror
        self.light_wrap = light_wrap
        self._wrap_source: Frame | None = None
        self._wrap_blurred: Frame | None = None
        self._flip_source: Frame | None = None
        self._flipped: Frame | None = None
        composite(*_TINY)  # compile (or load from Numba's cache) the blend now, not on a frame

    @property
    def background(self) -> Background:
        with self._lock:
            return self._background

    def set_background(self, background: Background) -> None:
        """Use ``background`` from the next frame on."""
        with self._lock:
            if background is not self._background:
                self._previous, self._background = self._background, background

    def _render(self, frame: Frame, t: float, matte: Matte | None) -> Frame | None:
        """The background's frame; a failing background is swapped for the previous one."""
        chosen = self.background
        try:
            return chosen.render(frame, t, matte)
        except BackgroundError as exc:
            with self._lock:
                previous = self._previous
                if previous is chosen or isinstance(previous, PassThrough):
                    previous = BlurBackground()  # never show the room because of a bad file
                self._background, self._previous = previous, BlurBackground()
            log.warning("%s Showing %s instead.", exc, previous.name)
            return previous.render(frame, t, matte)

    def composite(self, frame: Frame, mask: Matte | Mask | None, t: float) -> Frame:
        """The output frame for ``frame`` (H x W x 3 uint8 BGR) at time ``t`` seconds.

        ``mask`` is the person's Matte for this frame (H x W uint8; a float Mask is converted),
        in the camera's order like the frame (not mirrored); None (no mask yet) shows only the
        background, so the room is never shown by accident.
        """
        mirror = self.mirror  # read once: the key may turn it over during this frame
        chosen = self.background
        matte = None if mask is None else to_matte(mask)
        if isinstance(chosen, PassThrough):
            out = frame
        else:
            background = self._render(frame, t, matte)
            chosen = self.background
            if background is None:
                out = frame
            else:
                if mirror and not isinstance(chosen, BlurBackground):
                    # A picture, video or colour: flipped here and back with the output below,
                    # so it is shown as it is while the person (and a blurred room) is mirrored.
                    background = self._flip(background)
                if matte is None:
                    # Backgrounds cache their frame; sinks get their own (the flip below copies).
                    out = background if mirror else background.copy()
                else:
                    out = composite(frame, matte, background)
                    if self.light_wrap > 0 and not isinstance(chosen, BlurBackground):
                        out = self._wrap(out, matte, background)
        if mirror:
            return cv2.flip(out, 1)
        return out

    def _flip(self, background: Frame) -> Frame:
        """``background`` (H x W x 3 uint8 BGR) flipped left-right; a picture or a colour is
        flipped once, as long as its background gives the same cached frame."""
        if self._flip_source is not background or self._flipped is None:
            self._flip_source = background
            self._flipped = cv2.flip(background, 1)
        return self._flipped

    def _wrap(self, out: Frame, matte: Matte, background: Frame) -> Frame:
        """Light wrap: near the person's edge, blend in the blurred background's light."""
        if self._wrap_source is not background or self._wrap_blurred is None:
            self._wrap_source = background  # image backgrounds are cached: blur them once
            self._wrap_blurred = cv2.GaussianBlur(background, (0, 0), WRAP_SIGMA)
        mask = matte.astype(np.float32) * np.float32(1.0 / 255.0)
        room_near = cv2.GaussianBlur(1.0 - mask, (0, 0), WRAP_SIGMA)
        amount = np.minimum(room_near * mask * (2.0 * self.light_wrap), 1.0)
        return composite(self._wrap_blurred, to_matte(amount), out)
