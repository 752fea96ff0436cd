"""A segmenter that looks at the person: the model's input cut around the people it last found.

A selfie model sees the whole frame squeezed to its small input (256x256 or 256x144), so a person
who fills a third of the frame gets a third of the model's pixels. :class:`TrackingCrop` cuts the
model's input out of the frame around the person(s) of the last mask instead (with a margin, in
the model's aspect ratio, never smaller than a share of the frame) and puts the model's mask back
where the cut came from, on a frame-aligned mask of a fixed size (the *canvas*), so the filters
after it see one mask size in frame coordinates whatever the cut.

The whole frame is still looked at:

- while nobody is found (the first frame, the person left and has not come back yet): every
  frame, so someone who comes in is found on the first frame they show;
- every ``rescan`` masks, to find someone who came in beside the person tracked: that frame's
  extra model run looks at the whole frame only to widen the cut (its coarser mask is not
  used), and the frame then gets the (widened) cut's mask like any other, so every frame has a
  mask of its own while the model keeps up;
- when the cut has lost the person (almost nothing found in it).

A first frame whose person would be zoomed in is segmented twice (whole frame, then the cut), so a
photo gets the cut's mask too. In the steady state there is one model run per frame, a mask from
the cut, and one more every ``rescan`` frames (the look at the whole frame): 1/15 more model time
for a mask on every frame (before, the rescan's frame got none, which held a live run at 28 masks
out of 30 frames a second).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from vbg.images import Frame, Mask
from vbg.segmentation.segmenter import Segmenter, SegmenterWrapper

MARGIN = 0.15  # the cut reaches this share of the people's box beyond it on each side
MIN_SHARE = 0.35  # the cut is never narrower or lower than this share of the frame's
STRETCH = 1.4  # the cut's aspect may be this much narrower or wider than the model's (stretched)
RESCAN = 15  # the whole frame is looked at once in this many masks (0.5 s at 30 fps)
CANVAS_SIDE = 320  # the long side of the frame-aligned mask the cut is put back on
FOUND = 0.002  # a person is found when at least this share of the canvas is person
PART = 0.1  # parts of the mask smaller than this share of the largest are left out of the box
KEEP = 0.85  # the cut is kept while the box it would get covers this much of its area or more
SHRINK_AFTER = 5  # ... or less, but for fewer masks in a row than this (a sixth of a second)
ZOOM = 0.8  # a first frame is segmented again only when the cut is at most this share of it


@dataclasses.dataclass(frozen=True)
class Box:
    """A rectangle in frame pixels: left, top, width, height (floats)."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    @property
    def area(self) -> float:
        return self.width * self.height

    def contains(self, other: Box) -> bool:
        return (
            self.x <= other.x
            and self.y <= other.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def union(self, other: Box) -> Box:
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Box(x, y, max(self.right, other.right) - x, max(self.bottom, other.bottom) - y)

    def pixels(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the whole pixels the box covers."""
        x0, y0 = int(np.floor(self.x + 1e-6)), int(np.floor(self.y + 1e-6))
        return x0, y0, int(np.ceil(self.right - 1e-6)), int(np.ceil(self.bottom - 1e-6))


def people_box(
    mask: Mask, frame_size: tuple[int, int], part: float = PART, least: float = 0.0
) -> Box | None:
    """The box (frame pixels) around the parts of ``mask`` (a frame-aligned h x w float32) that
    are person, leaving out specks: parts smaller than ``part`` of the largest or than ``least``
    mask pixels. None when less than :data:`FOUND` of the mask is person, or no part is left."""
    height, width = mask.shape
    person = (mask > 0.5).astype(np.uint8)
    # Grana's block-based labelling: the same parts and boxes as OpenCV's default (Spaghetti)
    # in under half its time on a 320x180 mask (0.10 against 0.25 ms, people_box_speed.py).
    count, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        person, 8, cv2.CV_32S, cv2.CCL_GRANA
    )
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.sum() < FOUND * height * width:
        return None
    keep = stats[1:][areas >= max(part * areas.max(), least)]
    if len(keep) == 0:
        return None
    x0 = keep[:, cv2.CC_STAT_LEFT].min()
    y0 = keep[:, cv2.CC_STAT_TOP].min()
    x1 = (keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max()
    y1 = (keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max()
    sx, sy = frame_size[0] / width, frame_size[1] / height
    return Box(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy)


def cut_around(
    box: Box,
    frame_size: tuple[int, int],
    aspect: float,
    *,
    margin: float = MARGIN,
    min_share: float = MIN_SHARE,
    stretch: float = STRETCH,
) -> Box:
    """The model's cut for people in ``box``: ``margin`` of the box added on each side, widened
    to ``aspect`` (width / height), at least ``min_share`` of the frame in each direction, at most
    the frame, and moved inside the frame."""
    frame_w, frame_h = frame_size
    width = box.width * (1 + 2 * margin)
    height = box.height * (1 + 2 * margin)
    width = max(width, height * aspect / stretch, min_share * frame_w)
    height = max(height, width / (aspect * stretch), min_share * frame_h)
    width = max(width, height * aspect / stretch)  # the minimum height may have widened it
    width, height = min(width, frame_w), min(height, frame_h)
    cx = box.x + box.width / 2
    cy = box.y + box.height / 2
    x = min(max(cx - width / 2, 0.0), frame_w - width)
    y = min(max(cy - height / 2, 0.0), frame_h - height)
    return Box(x, y, width, height)


class TrackingCrop(SegmenterWrapper):
    """Runs ``segmenter`` on a cut of the frame around the people of the last mask; see the module
    docstring. Masks come back frame-aligned at :meth:`input_size` (``canvas_side`` long).

    :attr:`cut` is the box the model looks at next (None: the whole frame); :attr:`runs`
    counts model runs and :attr:`rescans` the extra looks at the whole frame.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        margin: float = MARGIN,
        min_share: float = MIN_SHARE,
        rescan: int = RESCAN,
        canvas_side: int = CANVAS_SIDE,
        stretch: float = STRETCH,
    ) -> None:
        super().__init__(segmenter)
        self.stretch = stretch
        self.margin = margin
        self.min_share = min_share
        self.rescan = rescan
        self.canvas_side = canvas_side
        self.cut: Box | None = None
        self._people: Box | None = None  # the people's box in the last mask
        self._small_for = 0  # masks in a row whose people would fit a much smaller cut
        self.runs = 0
        self.rescans = 0
        self._since_rescan = 0
        self._frame_size: tuple[int, int] | None = None

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The canvas: the frame's aspect, ``canvas_side`` on its long side (at most the
        frame's own size)."""
        scale = min(1.0, self.canvas_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def reset(self) -> None:
        """A new stream: the next frame is looked at whole."""
        self._forget()
        super().reset()

    def _forget(self) -> None:
        """Forget the people: the next frame is looked at whole."""
        self.cut = None
        self._people = None
        self._since_rescan = 0
        self._small_for = 0

    def predict(self, frame: Frame) -> Mask | None:
        height, width = frame.shape[:2]
        size = (width, height)
        if size != self._frame_size:  # a new stream or a resized camera
            self._frame_size = size
            self._forget()
        whole = Box(0.0, 0.0, float(width), float(height))
        if self.cut is None:
            mask = self._segment(frame, whole)
            found = people_box(mask, size)
            if found is None:
                return mask
            self._people, self.cut = found, self._cut(found)
            self._since_rescan = 0
            if self.cut.area > ZOOM * whole.area:
                return mask
            # A first look: segment the cut at once, outside it the whole frame's mask holds.
            return self._track(frame, self._segment(frame, self.cut, outside=mask))
        self._since_rescan += 1
        if self.rescan and self._since_rescan >= self.rescan:
            self._since_rescan = 0
            self.rescans += 1
            self._rescan(self._segment(frame, whole))  # that mask is coarser: only a look
        return self._track(frame, self._segment(frame, self.cut))

    # -- helpers -------------------------------------------------------------------------------

    def _cut(self, people: Box) -> Box:
        assert self._frame_size is not None
        return cut_around(
            people, self._frame_size, self._aspect(), margin=self.margin,
            min_share=self.min_share, stretch=self.stretch,
        )  # fmt: skip

    def _aspect(self) -> float:
        assert self._frame_size is not None
        model_w, model_h = self.inner.input_size(*self._frame_size)
        return model_w / model_h

    def _track(self, frame: Frame, mask: Mask) -> Mask:
        """Move the cut to where the people of ``mask`` are now. A cut that follows every jitter
        of the mask makes the mask flicker, so the cut moves only when the people come near its
        edge (closer than half the margin), and shrinks only when they have taken up much less
        of it (:data:`KEEP`) for :data:`SHRINK_AFTER` masks in a row."""
        assert self.cut is not None and self._frame_size is not None
        found = people_box(mask, self._frame_size)
        if found is None:
            self._forget()  # lost: look at the whole frame next time
            return mask
        self._people, target = found, self._cut(found)
        if not self.cut.contains(self._grown(found)):
            self.cut, self._small_for = target, 0
        elif target.area < KEEP * self.cut.area:
            self._small_for += 1
            if self._small_for >= SHRINK_AFTER:
                self.cut, self._small_for = target, 0
        else:
            self._small_for = 0
        return mask

    def _rescan(self, whole: Mask) -> None:
        """Widen the cut for people the whole frame's mask ``whole`` shows outside it (as large
        as :data:`PART` of the people in it at least: no specks)."""
        assert self.cut is not None and self._frame_size is not None
        height, width = whole.shape
        sx, sy = width / self._frame_size[0], height / self._frame_size[1]
        x0, y0 = round(self.cut.x * sx), round(self.cut.y * sy)
        x1, y1 = round(self.cut.right * sx), round(self.cut.bottom * sy)
        tracked = float((whole[y0:y1, x0:x1] > 0.5).sum())
        outside = whole.copy()
        outside[y0:y1, x0:x1] = 0.0
        found = people_box(outside, self._frame_size, least=PART * tracked)
        if found is not None:
            self._people = found if self._people is None else found.union(self._people)
            self.cut, self._small_for = self._cut(self._people), 0

    def _grown(self, people: Box) -> Box:
        """``people`` with half the margin around it, within the frame."""
        assert self._frame_size is not None
        grow_x, grow_y = self.margin / 2 * people.width, self.margin / 2 * people.height
        x0, y0 = max(0.0, people.x - grow_x), max(0.0, people.y - grow_y)
        x1 = min(float(self._frame_size[0]), people.right + grow_x)
        y1 = min(float(self._frame_size[1]), people.bottom + grow_y)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def _segment(self, frame: Frame, box: Box, outside: Mask | None = None) -> Mask:
        """The model's mask for ``box`` of ``frame``, on the canvas; canvas pixels outside the
        box are 0, or taken from ``outside`` (a canvas mask) when given."""
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = box.pixels()
        mask = self.inner.predict(frame[y0:y1, x0:x1])
        self.runs += 1
        if mask is None:
            raise RuntimeError(f"{self.name} made no mask for a cut of the frame")
        canvas_w, canvas_h = self.input_size(width, height)
        sx, sy = canvas_w / width, canvas_h / height
        mask_h, mask_w = mask.shape
        # Mask pixel u's centre lies at x0 + (u + 0.5) * cut_w / mask_w in the frame, canvas pixel
        # j's at (j + 0.5) / sx: the affine map from mask pixels to canvas pixels.
        step_x, step_y = (x1 - x0) / mask_w, (y1 - y0) / mask_h
        to_canvas = np.array(
            [
                [sx * step_x, 0.0, sx * (x0 + 0.5 * step_x) - 0.5],
                [0.0, sy * step_y, sy * (y0 + 0.5 * step_y) - 0.5],
            ],
            np.float32,
        )
        placed = cv2.warpAffine(
            mask, to_canvas, (canvas_w, canvas_h), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        if (x0, y0, x1, y1) != (0, 0, width, height):
            # Canvas pixels whose centres fall outside the cut: not seen by the model this time.
            cx0, cy0 = int(np.ceil(x0 * sx - 0.5)), int(np.ceil(y0 * sy - 0.5))
            cx1, cy1 = int(np.ceil(x1 * sx - 0.5)), int(np.ceil(y1 * sy - 0.5))
            rest = outside if outside is not None else np.zeros_like(placed)
            inside = placed[cy0:cy1, cx0:cx1].copy()
            placed = rest.copy()
            placed[cy0:cy1, cx0:cx1] = inside
        return placed
