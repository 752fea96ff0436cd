"""The one frame path: segment -> mask filters -> composite.

:class:`FrameProcessor` is what ``vbg run``, ``vbg process`` and ``vbg eval`` all put a frame
through, so what ``vbg eval`` scores and what ``vbg process`` writes is what ``vbg run`` shows.
It has two halves, because the live pipeline runs them on two threads (the model may be slower
than the camera):

- :meth:`FrameProcessor.keyframe`: the model's half. The segmenter's mask for a frame, smoothed
  over time (:class:`vbg.mask_filters.TemporalSmoother`).
- :meth:`FrameProcessor.render`: the compositor's half. The newest keyframe's mask moved to the
  frame shown (optical flow) and brought to full size along the frame's edges (a Matte, uint8),
  then blended onto the background.

Offline callers use :meth:`FrameProcessor.process`, both halves for one frame. The clock is
passed in: ``t`` is the frame's time in seconds since the stream began (live: capture time;
``vbg process``: the file's frame time; ``vbg eval``'s replay: the replayed camera's time).
Frames come in time order.

Pure stage (no threads, no I/O): the halves may run on two threads because each owns its own
filters (the smoother, and the tracker and refiner).

What the picture cannot say is said in the log: when the masks have shown nobody for
:data:`NO_PERSON_SECONDS` of frame time (wrong weights, a dark room, a covered camera), one
warning, and :attr:`FrameProcessor.warning` holds it for the preview's overlay until a person is
found again (then the log says so, once). It is never drawn on the output frame: the call must
not see it.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from vbg.compositing.compositor import Compositor, banner
from vbg.images import Frame, Mask, Matte, to_mask
from vbg.mask_filters import Keyframe, MaskOptions, MaskPath
from vbg.segmentation.crop import FOUND
from vbg.segmentation.segmenter import Segmenter

log = logging.getLogger("vbg")
NO_PERSON_SECONDS = 3.0  # nobody found in the masks for this long (frame time): say so
NO_PERSON = (
    f"no person found for {NO_PERSON_SECONDS:g} s: check the light, the camera, or "
    "--model/--weights"
)
PERSON_AGAIN = "a person is found again"


def person_found(mask: Mask) -> bool:
    """Whether ``mask`` (h x w float32 in [0, 1]) shows a person: at least :data:`FOUND` of it
    above 0.5, the share the tracking crop looks for (:mod:`vbg.segmentation.crop`)."""
    return int(np.count_nonzero(mask > 0.5)) >= FOUND * mask.size


class PersonWatch:
    """Whether the masks have shown nobody for ``after`` seconds of frame time.

    :meth:`look` takes each frame's mask with the frame's time ``t`` (seconds; from the frames,
    never the wall clock, so a busy machine changes nothing). The time runs from the last mask
    with a person, or from the first mask. Once ``after`` has passed, :attr:`warning` is set and
    logged once; the first mask with a person clears it and logs :data:`PERSON_AGAIN` once.
    """

    def __init__(self, after: float = NO_PERSON_SECONDS) -> None:
        self.after = after
        self.warning: str | None = None
        self._seen_at: float | None = None  # frame time of the last person (or first mask)
        self._mask: Mask | None = None  # the mask looked at last, and what it showed
        self._found = False

    def look(self, mask: Mask, t: float) -> None:
        """Take ``mask`` (h x w float32) shown with the frame at time ``t``; a mask looked at
        before (no new one from the model) is not counted again."""
        if mask is not self._mask:
            self._mask, self._found = mask, person_found(mask)
        if self._found:
            self._seen_at = t
            if self.warning is not None:
                self.warning = None
                log.info(PERSON_AGAIN)
        elif self._seen_at is None:
            self._seen_at = t
        elif self.warning is None and t - self._seen_at >= self.after:
            self.warning = NO_PERSON
            log.warning(NO_PERSON)


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One output frame: ``frame`` (H x W x 3 uint8 BGR, what the outputs get) and the full-size
    ``matte`` (H x W uint8, 255 = person) it was made with (None before the first mask), in the
    camera's order: with the compositor's mirror on, flip it to line it up with ``frame``."""

    frame: Frame
    matte: Matte | None
    mask_age: float | None  # seconds between the mask's frame and this frame


class FrameProcessor:
    """Segments, filters and composites frames; see the module docstring.

    ``segmenter`` may return None for a frame (a still scene, see
    :class:`vbg.segmentation.still.StillSceneGate`): the last mask is used on.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        compositor: Compositor,
        options: MaskOptions | None = None,
    ) -> None:
        self.segmenter = segmenter
        self.compositor = compositor
        self.options = options or MaskOptions()
        self._path = MaskPath(self.options)
        self._matte: Matte | None = None  # the last full-size Matte, for frames shown again
        self._keyframe: Keyframe | None = None  # the last keyframe made
        self._watch = PersonWatch()

    @property
    def warning(self) -> str | None:
        """What the user should know that the picture does not say (nobody found for
        :data:`NO_PERSON_SECONDS`), for the preview's overlay; None while all is well."""
        return self._watch.warning

    def reset(self) -> None:
        """Start a new stream (the next photo, another clip): the segmenter and the filters
        forget the frames before."""
        self.segmenter.reset()
        self._path = MaskPath(self.options)
        self._matte = None
        self._keyframe = None
        self._watch = PersonWatch()

    # -- the model's half --------------------------------------------------------------------

    def keyframe(self, frame: Frame, t: float) -> Keyframe | None:
        """The model's smoothed low-resolution mask for ``frame`` (H x W x 3 uint8 BGR) at time
        ``t``; None when the segmenter made no new mask for it (keep using the last one)."""
        mask = self.segmenter.predict(frame)
        if mask is None:
            return None
        self._keyframe = self._path.keyframe(mask, frame, t)
        return self._keyframe

    # -- the compositor's half ---------------------------------------------------------------

    def render(
        self,
        frame: Frame,
        keyframe: Keyframe | None,
        t: float,
        *,
        notice: str | None = None,
        repeat: bool = False,
    ) -> Rendered:
        """The output for ``frame`` (H x W x 3 uint8 BGR) at time ``t`` with the newest
        ``keyframe`` (None before the first: only the background is shown, never the room).

        ``repeat``: the frame is the one shown last, shown again (a lost camera): its mask is
        reused. ``notice``: a line every viewer should see, drawn along the bottom.
        """
        age = None
        if keyframe is not None:
            self._watch.look(keyframe.mask, t)
            if not (repeat and self._matte is not None):
                self._matte = self.mask_for(keyframe, frame, t)
                age = t - keyframe.captured_at
        out = self.compositor.composite(frame, self._matte, t)
        if notice:
            out = banner(out, notice)
        return Rendered(out, self._matte, age)

    def mask_for(self, keyframe: Keyframe, frame: Frame, t: float) -> Matte:
        """``keyframe``'s mask moved to ``frame`` (H x W x 3 uint8 BGR, time ``t``) and refined to
        its full size: a Matte, H x W uint8."""
        return self._path.mask_for(keyframe, frame, t)

    # -- both, for files ---------------------------------------------------------------------

    def process(self, frame: Frame, t: float) -> Rendered:
        """Both halves for one frame of a file: every frame gets a mask made from itself, and the
        filters see every frame in order."""
        self.keyframe(frame, t)
        return self.render(frame, self._keyframe, t)

    def mask(self, frame: Frame, t: float) -> Mask:
        """The full-size mask (H x W float32 in [0, 1]: the Matte / 255) that ``frame`` is
        composited with when the model keeps up with the frames; what ``vbg eval`` scores."""
        keyframe = self.keyframe(frame, t) or self._keyframe
        if keyframe is None:
            raise RuntimeError("the segmenter made no mask for the first frame")
        return to_mask(self.mask_for(keyframe, frame, t))
