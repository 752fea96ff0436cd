"""Mask filters between the model and the compositor: what makes the mask look right over time.

Pure stage (no threads, no I/O); each filter works on arrays:

- :class:`TemporalSmoother`: motion-aware running average of the model's masks with a backlash
  (hysteresis) so pixels that only see noise do not flicker, while pixels where the picture moved
  take the new mask at once (no ghost trail).
- :class:`FlowPropagator` and :class:`FlowTracker`: move the newest mask along with the person for
  every frame shown before the next model result, with OpenCV's DIS optical flow at low
  resolution, frame by frame.
- :class:`MaskRefiner`: upsamples the low-resolution mask guided by the full-size frame (a fast
  guided filter), so edges follow hair and shoulders, with a steeper room side of the edge (no
  glow of the room around the person) and an optional feather. Its full-size step is one pass
  over the frame compiled with Numba, which writes the Matte (uint8) the compositor blends with.

:class:`MaskPath` puts them together as the frame processor (vbg.processor) uses them.

Masks are H x W float32 in [0, 1]; the low-resolution ones are at the model's output size.
The full-size result is a Matte, H x W uint8 in [0, 255]. Grey images are H x W uint8.
"""

from __future__ import annotations

import collections
import dataclasses

import cv2
import numba
import numpy as np

from vbg.images import Frame, Mask, Matte, grey, halved

Grey = np.ndarray  # H x W uint8
_Grid = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # see _bilinear_grid

FLOW_WIDTH = 320  # frames are this wide (or less) for the flow that moves masks between results
HYSTERESIS_BAND = 0.25  # the hysteresis acts on mask values within this of the 0.5 threshold
SURE = 0.1  # the refiner moves model values this close to 0 or 1 less, and 0 or 1 not at all
REFINE_WIDTH = 1920  # frames wider than this are refined at their halving (4K: at 1920 wide)
EDGE_CONTRAST = 3.0  # vbg's edge: its room side (mask below 0.5) made this many times steeper


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """A smoothed low-resolution mask with the small grey image of the frame it came from."""

    mask: Mask  # h x w float32
    grey: Grey  # h x w uint8, the same size
    captured_at: float = 0.0


class TemporalSmoother:
    """Motion-aware temporal smoothing with hysteresis.

    Each new mask is blended into the running one with a weight that depends, per pixel, on how
    much the picture changed there since the last mask: where it is still, the new mask counts
    for ``1 - strength`` (noise averages out); where it moved by ``motion_scale`` grey levels or
    more, the new mask is taken as it is (the mask keeps up with the person, no trail).
    With ``flow``, the previous masks are first moved along the optical flow to the new frame
    and the change is measured there, so a panning camera still counts as a still picture.
    Near the 0.5 threshold (within ``HYSTERESIS_BAND``) the output then follows the running mask
    with a backlash of ``hysteresis``: a pixel's value changes only when the running mask moves
    more than that away from it, so edge pixels do not toggle on noise. ``strength`` 0 and
    ``hysteresis`` 0 turn it off.
    """

    def __init__(
        self,
        strength: float = 0.5,
        hysteresis: float = 0.0,
        motion_scale: float = 30.0,
        flow: FlowPropagator | None = None,
    ) -> None:
        self.strength = strength
        self.hysteresis = hysteresis
        self.motion_scale = motion_scale
        self.flow = flow
        self._state: Mask = np.zeros((0, 0), np.float32)  # the running mask
        self._output: Mask = self._state  # what was last returned
        self._grey: Grey | None = None

    def update(self, mask: Mask, grey_image: Grey | None = None) -> Mask:
        """Blend ``mask`` (h x w float32) in; ``grey_image`` (h x w uint8) is the frame it came
        from (None: no motion information, a plain running average). Returns the output mask."""
        if self._state.shape != mask.shape:
            self._state = mask.astype(np.float32, copy=True)
            self._output = self._state.copy()
            self._grey = grey_image
            return self._output.copy()
        if self.strength > 0:
            weight = np.full(mask.shape, 1.0 - self.strength, np.float32)
            if grey_image is not None and self._grey is not None:
                previous_grey = self._grey
                if self.flow is not None:  # follow the motion: compare along the flow
                    maps = self.flow.maps(grey_image, self._grey)
                    self._state = remap(self._state, maps)
                    self._output = remap(self._output, maps)
                    previous_grey = remap(self._grey, maps)
                change = cv2.blur(cv2.absdiff(grey_image, previous_grey).astype(np.float32), (3, 3))
                motion = np.minimum(change * (1.0 / self.motion_scale), 1.0)
                weight += self.strength * motion
            self._state += weight * (mask - self._state)
        else:
            self._state = mask.astype(np.float32, copy=True)
        self._grey = grey_image
        if self.hysteresis > 0:
            # Backlash near the threshold only: there a pixel keeps its value until the running
            # mask has moved more than ``hysteresis`` away; elsewhere it follows at once.
            held = np.clip(self._output, self._state - self.hysteresis,
                           self._state + self.hysteresis)  # fmt: skip
            near = np.abs(self._state - 0.5) < HYSTERESIS_BAND
            self._output = np.where(near, held, self._state).astype(np.float32)
        else:
            self._output = self._state.copy()
        return self._output.copy()


class FlowPropagator:
    """Moves a Keyframe's mask to a later frame along the optical flow between the two.

    The flow is computed from the later frame back to the keyframe (DIS, OpenCV's fast dense
    flow) on small grey images, and the mask is sampled where each pixel came from.
    """

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self._dis = cv2.DISOpticalFlow.create(preset)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def flow(self, grey_now: Grey, grey_then: Grey) -> np.ndarray:
        """h x w x 2 float32: for each pixel of ``grey_now``, where it was in ``grey_then``,
        as an offset in pixels."""
        return self._dis.calc(grey_now, grey_then, None)  # type: ignore[call-overload,no-any-return]

    def maps(self, grey_now: Grey, grey_then: Grey) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap maps that sample an image of the ``grey_then`` frame at the place each
        pixel of ``grey_now`` came from."""
        if grey_now.shape != grey_then.shape:
            raise ValueError("grey images of different sizes")
        flow = self.flow(grey_now, grey_then)
        height, width = grey_now.shape
        if self._grid is None or self._grid[0].shape != (height, width):
            xs, ys = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))  # fmt: skip
            self._grid = (xs, ys)
        return self._grid[0] + flow[..., 0], self._grid[1] + flow[..., 1]

    def propagate(self, keyframe: Keyframe, grey_now: Grey) -> Mask:
        """The keyframe's mask moved to the frame whose small grey image is ``grey_now``."""
        map_x, map_y = self.maps(grey_now, keyframe.grey)
        return remap(keyframe.mask, (map_x, map_y))


@dataclasses.dataclass(frozen=True)
class _Step:
    captured_at: float
    grey: Grey
    maps: tuple[np.ndarray, np.ndarray] | None  # remap maps from the frame before to this one


class FlowTracker:
    """Keeps the newest keyframe's mask moving with the picture, frame by frame.

    Each frame's flow back to the frame before is computed once and kept for a while
    (``history`` frames); a keyframe that arrives late (the model took its time) is moved through
    the flows of every frame since its own, one small step at a time, which DIS follows far
    better than one large jump. It runs for every frame shown, so it uses DIS's ultrafast preset
    (about 3 ms at 320 px wide on one core; on parkour it recovers nearly as much as the medium
    preset, which takes 8 ms).
    """

    def __init__(
        self,
        history: int = 64,
        width: int = FLOW_WIDTH,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    ) -> None:
        self.width = width
        self.propagator = FlowPropagator(preset)
        self._steps: collections.deque[_Step] = collections.deque(maxlen=history)
        self._key_at: float | None = None
        self._mask: Mask | None = None

    def track(self, keyframe: Keyframe, frame: Frame, captured_at: float) -> Mask:
        """The keyframe's mask (h x w) moved to ``frame`` (H x W x 3 uint8 BGR), captured at
        ``captured_at`` (frames come in capture order; keyframes too). A keyframe of this very
        frame comes back as it is, at the model's resolution; a moved one is ``width`` wide."""
        width, height = flow_size(frame, self.width)
        now = grey(frame, width, height)
        if keyframe.captured_at == captured_at:
            # The mask is this frame's own: nothing to move, and later keyframes come from this
            # frame or later ones, so the older flows are no longer needed either.
            self._steps.clear()
            self._steps.append(_Step(captured_at, now, None))
            self._key_at, self._mask = None, None
            return keyframe.mask
        last = self._steps[-1] if self._steps else None
        maps = None
        if last is not None and last.grey.shape == now.shape and last.captured_at < captured_at:
            maps = self.propagator.maps(now, last.grey)
        self._steps.append(_Step(captured_at, now, maps))
        if keyframe.captured_at != self._key_at or self._mask is None:
            self._key_at = keyframe.captured_at
            mask = cv2.resize(keyframe.mask, (width, height), interpolation=cv2.INTER_LINEAR)
            for step in self._steps:
                if step.captured_at > keyframe.captured_at and step.maps is not None:
                    mask = remap(mask, step.maps)
        else:
            mask = remap(self._mask, maps) if maps is not None else self._mask
        self._mask = mask
        return mask


def remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``image`` (a mask or a grey image, h x w) sampled where :meth:`FlowPropagator.maps` say
    each pixel came from, bilinear, the edge repeated."""
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_size(frame: Frame, width: int = FLOW_WIDTH) -> tuple[int, int]:
    """(width, height) of the small images the flow is computed on for ``frame`` (H x W x 3):
    at most ``width`` wide, in the frame's aspect."""
    frame_h, frame_w = frame.shape[:2]
    small_w = min(width, frame_w)
    return small_w, max(8, round(frame_h * small_w / frame_w))


class MaskRefiner:
    """Brings the low-resolution mask to full resolution (the last step before compositing).

    ``guided``: a fast guided filter with the frame's grey image as the guide (He et al.): the
    mask's local linear model of the guide is fitted at low resolution (window ``radius`` pixels
    there; ``eps`` sets how closely it follows the guide) and applied at
    full resolution, so edges land on the frame's edges. Otherwise plain bilinear upsampling.
    ``contrast``: the room's side of the edge made steeper: below 0.5 a mask value ``m`` becomes
    ``0.5 + contrast * (m - 0.5)`` (at least 0); from 0.5 up it stays as it is. The model's edge
    is a soft band 8-15 px wide at 720p, and its half below 0.5 outside the person lets the room
    through (a glow around the person on every background). A steeper room side lets far less
    through and keeps the 0.5 outline (so IoU and boundary F) and the person's side of the edge
    as the model gives them; steepening that side too would hide no more room, make the outline
    that is too wide more opaque, and make the edge's wobble show more. 1: the model's own edge.
    ``feather``: a Gaussian softening of the edge, in full-resolution pixels (after the contrast).

    The full-size work is one pass (:func:`_guided_matte`): per pixel the frame's grey value,
    the linear model, the contrast, the clip and the rounding to the uint8 Matte, with the
    model's coefficients brought to full size on the way (bilinear, as cv2.resize), and the
    pixels away from the edge (0 or 255 whatever the frame shows there) written without
    reading the frame. Frames wider than ``width`` are refined at their first halving that
    is not wider (a 4K frame at 1920 wide) and the Matte scaled up: on DAVIS clips scaled to
    720p, refining at half the size cost 0.1-0.3 points of boundary F, so frames up to 1080p
    are refined at full size. Each call returns a new Matte.
    """

    def __init__(
        self,
        *,
        guided: bool = True,
        radius: int = 1,
        eps: float = 1e-3,
        contrast: float = 1.0,
        feather: float = 0.0,
        width: int = REFINE_WIDTH,
    ) -> None:
        self.guided = guided
        self.width = width
        self.radius = radius
        self.eps = eps
        self.contrast = contrast
        self.feather = feather
        self._offset: np.ndarray = np.zeros((0, 0), np.float32)  # the plain path's, reused
        self._grid: tuple[tuple[int, int, int, int], _Grid] | None = None
        # Compile (or load from Numba's cache) the passes now, not on the first frame.
        tiny, matte = np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8)
        grid = _bilinear_grid(2, 2, 2, 2)
        _guided_matte(np.zeros((2, 2, 3), np.uint8), tiny, tiny, grid, np.float32(1.0), matte)
        _plain_matte(tiny, np.float32(1.0), matte)

    def refine(self, mask: Mask, frame: Frame) -> Matte:
        """``mask`` (h x w float32) at the size of ``frame`` (H x W x 3 uint8 BGR), as a Matte
        (H x W uint8, 255 = person)."""
        height, width = frame.shape[:2]
        small_h, small_w = mask.shape
        contrast = np.float32(self.contrast)
        if not self.guided or (small_h, small_w) == (height, width):
            if self._offset.shape != (height, width):
                self._offset = np.empty((height, width), np.float32)
            matte = np.empty((height, width), np.uint8)
            cv2.resize(mask * np.float32(255.0), (width, height), dst=self._offset)
            _plain_matte(self._offset, contrast, matte)
        else:
            times = 0
            while (width >> times) > self.width:
                times += 1
            guide = halved(frame, times)
            guide_h, guide_w = guide.shape[:2]
            sizes = (small_w, small_h, guide_w, guide_h)
            if self._grid is None or self._grid[0] != sizes:
                self._grid = (sizes, _bilinear_grid(*sizes))
            slope, offset = self._coefficients(mask, frame)
            refined = np.empty((guide_h, guide_w), np.uint8)
            guide = np.ascontiguousarray(guide)  # one compiled layout
            _guided_matte(guide, slope, offset, self._grid[1], contrast, refined)
            matte = refined
            if times:
                matte = np.empty((height, width), np.uint8)
                cv2.resize(refined, (width, height), dst=matte, interpolation=cv2.INTER_LINEAR)
        if self.feather > 0:
            cv2.GaussianBlur(matte, (0, 0), self.feather, dst=matte)
        return matte

    def _coefficients(self, mask: Mask, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """The guided filter at the mask's size (h x w float32 each): the full-size Matte is
        ``slope * I + offset`` for the frame's grey value I (0-255), before the contrast."""
        small_h, small_w = mask.shape
        guide = grey(frame, small_w, small_h).astype(np.float32) * (1.0 / 255.0)
        r = self.radius
        size = (2 * r + 1, 2 * r + 1)
        mean_i = cv2.boxFilter(guide, -1, size)
        mean_p = cv2.boxFilter(mask, -1, size)
        cov_ip = cv2.boxFilter(guide * mask, -1, size) - mean_i * mean_p
        var_i = cv2.boxFilter(guide * guide, -1, size) - mean_i * mean_i
        a = cov_ip / (var_i + self.eps)
        b = mean_p - a * mean_i
        # Refine only along the edge: where the model is sure (all room or all person around a
        # pixel), keep its answer, so no texture of the frame leaks into the mask.
        # trust = min(m, 1 - m) / SURE, at most 1: 0 where the model is sure, 1 along the edge.
        # out = m + trust * (mean(a) * I + mean(b) - m) = trust * mean(a) * I + c, with the
        # factors of I folded at low resolution (and the Matte's 255: I is 0-255, so a's 1/255
        # and the 255 cancel).
        trust = np.minimum(np.minimum(mask, 1.0 - mask) * (1.0 / SURE), 1.0)
        slope = cv2.boxFilter(a, -1, size) * trust
        offset = (mask + trust * (cv2.boxFilter(b, -1, size) - mask)) * np.float32(255.0)
        return slope.astype(np.float32, copy=False), offset.astype(np.float32, copy=False)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _guided_matte(
    frame: Frame,
    slope: np.ndarray,
    offset: np.ndarray,
    grid: _Grid,
    contrast: np.float32,
    out: Matte,
) -> None:  # pragma: no cover - compiled; tested through MaskRefiner
    """``out`` (H x W uint8) = the Matte of ``slope * I + offset`` for the grey value I of
    ``frame`` (H x W x 3 uint8 BGR; OpenCV's BGR2GRAY weights, in its fixed point), the room
    side made steeper by ``contrast``, clipped, rounded. ``slope`` and ``offset`` (h x w
    float32, in Matte units) are at the model's size and brought to full size here, bilinear,
    by ``grid`` (:func:`_bilinear_grid`): no full-size float image is written.

    A pixel whose two neighbours in the row of coefficients both give 0 (or both 255) for every
    grey value gives that too, whatever its own grey value (the bilinear mix of two linear
    models lies between them): such pixels, most of the frame away from the person's edge, are
    written without reading the frame."""
    spans, column_weights, rows, row_weights = grid
    height = out.shape[0]
    small_w = slope.shape[1]
    # Below ``room``, a value's Matte is 0 (127.5 - value made ``contrast`` times larger is
    # more than 127); from ``person`` up it is 255. A little inside both, for the float sums.
    room = (np.float32(0.5) + (contrast - np.float32(1.0)) * np.float32(127.5)) / contrast
    room -= np.float32(0.01)
    person = np.float32(254.5 + 0.01)
    row_slope = np.empty(small_w, np.float32)
    row_offset = np.empty(small_w, np.float32)
    same = np.empty(small_w, np.uint8)  # 1: room for any grey value, 2: person, 0: depends
    for y in range(height):
        top = rows[y]
        below = min(top + 1, slope.shape[0] - 1)
        down = row_weights[y]
        for j in range(small_w):
            a = slope[top, j] + down * (slope[below, j] - slope[top, j])
            c = offset[top, j] + down * (offset[below, j] - offset[top, j])
            row_slope[j] = a
            row_offset[j] = c
            lowest = min(c, c + np.float32(255.0) * a)
            highest = max(c, c + np.float32(255.0) * a)
            same[j] = 1 if highest < room else (2 if lowest >= person else 0)
        for j in range(small_w - 1):
            if same[j] != same[j + 1]:
                same[j] = 0
        j = 0
        while j < small_w:
            known = same[j]
            if known:  # the run of columns taken from j on with the same answer: filled
                end = j + 1
                while end < small_w and same[end] == known:
                    end += 1
                out[y, spans[j] : spans[end]] = 0 if known == 1 else 255
                j = end
                continue
            for x in range(spans[j], spans[j + 1]):
                left = j
                right = min(left + 1, small_w - 1)
                across = column_weights[x]
                a = row_slope[left] + across * (row_slope[right] - row_slope[left])
                c = row_offset[left] + across * (row_offset[right] - row_offset[left])
                intensity = (
                    np.int32(frame[y, x, 0]) * 1868
                    + np.int32(frame[y, x, 1]) * 9617
                    + np.int32(frame[y, x, 2]) * 4899
                    + 8192
                ) >> 14
                out[y, x] = _to_matte(a * np.float32(intensity) + c, contrast)
            j += 1


def _bilinear_grid(small_w: int, small_h: int, width: int, height: int) -> _Grid:
    """Where cv2.resize (INTER_LINEAR) takes each pixel of a width x height image from a
    small_w x small_h one: the columns taken from each source column and the one right of it
    (``spans[j]`` to ``spans[j + 1]``, int64, small_w + 1 of them) and the right one's weight
    for each column (float32); per row the upper source row (int32) and the lower one's
    weight."""

    def axis(small: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        place = (np.arange(size, dtype=np.float64) + 0.5) * (small / size) - 0.5
        first = np.floor(place)
        weight = place - first
        weight[first < 0] = 0.0
        first[first < 0] = 0
        weight[first >= small - 1] = 0.0
        first[first >= small - 1] = small - 1
        return first.astype(np.int32), weight.astype(np.float32)

    columns, column_weights = axis(small_w, width)
    rows, row_weights = axis(small_h, height)
    spans = np.searchsorted(columns, np.arange(small_w + 1), side="left").astype(np.int64)
    return spans, column_weights, rows, row_weights


@numba.njit(cache=True, nogil=True, fastmath=True)
def _plain_matte(values: np.ndarray, contrast: np.float32, out: Matte) -> None:  # pragma: no cover
    """``out`` (H x W uint8) = the Matte of ``values`` (H x W float32 in Matte units), the room
    side made steeper by ``contrast``, clipped, rounded."""
    v = values.reshape(-1)
    o = out.reshape(-1)
    for i in range(o.size):
        o[i] = _to_matte(v[i], contrast)


@numba.njit(inline="always", fastmath=True)
def _to_matte(value: np.float32, contrast: np.float32) -> np.uint8:  # pragma: no cover
    """One Matte value (0-255 scale, float32): below 127.5 made ``contrast`` times steeper,
    clipped to [0, 255], rounded."""
    value += (contrast - np.float32(1.0)) * min(value - np.float32(127.5), np.float32(0.0))
    value = min(max(value, np.float32(0.0)), np.float32(255.0))
    return np.uint8(value + np.float32(0.5))


@dataclasses.dataclass(frozen=True)
class MaskOptions:
    """How the model's masks are filtered (see the classes above); the defaults are vbg's."""

    smoothing: float = 0.8  # TemporalSmoother.strength
    hysteresis: float = 0.05  # TemporalSmoother.hysteresis
    motion_compensated: bool = True  # TemporalSmoother follows the optical flow
    propagate: bool = True  # FlowPropagator between model results
    refine: bool = True  # MaskRefiner.guided
    edge_contrast: float = EDGE_CONTRAST  # MaskRefiner.contrast, with refine (off: the model's)
    feather: float = 0.0  # MaskRefiner.feather


class MaskPath:
    """The mask path from model output to compositor, in the two halves the pipeline runs on two
    threads: :meth:`keyframe` where the model runs (it owns the smoother), :meth:`mask_for`
    where frames are composited (it owns the propagator and the refiner)."""

    def __init__(self, options: MaskOptions | None = None) -> None:
        options = options or MaskOptions()
        self.options = options
        self.smoother = TemporalSmoother(
            options.smoothing,
            options.hysteresis,
            flow=FlowPropagator() if options.motion_compensated else None,
        )
        self.tracker = FlowTracker() if options.propagate else None
        self.refiner = MaskRefiner(
            guided=options.refine,
            contrast=options.edge_contrast if options.refine else 1.0,
            feather=options.feather,
        )

    def keyframe(self, mask: Mask, frame: Frame, captured_at: float = 0.0) -> Keyframe:
        """Smooth the model's ``mask`` (h x w) for ``frame`` (H x W x 3 uint8 BGR)."""
        small_grey = grey(frame, mask.shape[1], mask.shape[0])
        return Keyframe(self.smoother.update(mask, small_grey), small_grey, captured_at)

    def mask_for(self, keyframe: Keyframe, frame: Frame, captured_at: float | None = None) -> Matte:
        """The full-size Matte (H x W uint8) to show with ``frame``: the keyframe's mask, moved
        to ``frame`` when it came from an earlier frame (``captured_at`` differs), then
        refined."""
        small = keyframe.mask
        if self.tracker is not None and captured_at is not None:
            small = self.tracker.track(keyframe, frame, captured_at)
        return self.refiner.refine(small, frame)
