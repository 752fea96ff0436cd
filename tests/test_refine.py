"""The mask filters on small real crops with exact expectations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.commands.evaluate import boundary, iou
from vbg.images import to_mask
from vbg.mask_filters import (
    FlowPropagator,
    FlowTracker,
    Keyframe,
    MaskOptions,
    MaskPath,
    MaskRefiner,
    TemporalSmoother,
    grey,
)

PHOTO = "doctor_saxon"  # 320 x 214: one person over a rocky landscape (texture for the flow)


def _photo() -> tuple[np.ndarray, np.ndarray]:
    root = fixture_path("photos")
    frame = cv2.imread(str(root / "images" / f"{PHOTO}.jpg"))
    truth = cv2.imread(str(root / "masks" / f"{PHOTO}.png"), cv2.IMREAD_GRAYSCALE) > 127
    return frame, truth


def _small(truth: np.ndarray, factor: int) -> np.ndarray:
    h, w = truth.shape
    return cv2.resize(
        truth.astype(np.float32), (w // factor, h // factor), interpolation=cv2.INTER_AREA
    )


def test_a_still_scene_stays_still() -> None:
    frame, truth = _photo()
    mask = _small(truth, 2)
    still = grey(frame, mask.shape[1], mask.shape[0])
    rng = np.random.default_rng(0)
    smoother = TemporalSmoother(strength=0.8, hysteresis=0.05)
    raw_flips = smooth_flips = 0
    previous_raw = previous_out = None
    for _ in range(12):
        noisy = np.clip(mask + rng.normal(0, 0.05, mask.shape).astype(np.float32), 0, 1)
        out = smoother.update(noisy, still)
        if previous_raw is not None and previous_out is not None:
            raw_flips += int(((noisy > 0.5) != (previous_raw > 0.5)).sum())
            smooth_flips += int(((out > 0.5) != (previous_out > 0.5)).sum())
        previous_raw, previous_out = noisy, out
    assert raw_flips > 100  # the noise alone makes edge pixels toggle...
    assert smooth_flips < raw_flips / 20  # ...and the filter keeps them still


def test_a_moving_person_is_followed_without_a_trail() -> None:
    frame, truth = _photo()
    mask = _small(truth, 2)
    height, width = mask.shape
    smoother = TemporalSmoother(strength=0.8, hysteresis=0.05)
    smoother.update(mask, grey(frame, width, height))
    moved_frame = np.roll(frame, 24, axis=1)  # the person steps 12 mask pixels to the right
    moved_mask = np.roll(mask, 12, axis=1)
    out = smoother.update(moved_mask, grey(moved_frame, width, height))
    assert iou(out > 0.5, moved_mask > 0.5) > 0.93
    # A fixed running average with the same weight would leave a ghost where the person was.
    fixed = 0.8 * mask + 0.2 * moved_mask
    assert iou(fixed > 0.5, moved_mask > 0.5) < 0.9


@pytest.mark.parametrize(("dx", "dy"), [(6, 3), (-4, 5)])
def test_flow_moves_a_mask_by_a_known_shift(dx: int, dy: int) -> None:
    crop, truth = _photo()  # the whole photo: the person's edge and the landscape's texture
    mask = truth.astype(np.float32)
    shifted = np.roll(crop, (dy, dx), axis=(0, 1))
    expected = np.roll(mask, (dy, dx), axis=(0, 1))
    key = Keyframe(mask, cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    moved = FlowPropagator().propagate(key, cv2.cvtColor(shifted, cv2.COLOR_BGR2GRAY))
    inner = (slice(20, -20), slice(20, -20))  # away from the wrapped-around border
    assert iou(moved[inner] > 0.5, expected[inner] > 0.5) > 0.95
    assert iou(mask[inner] > 0.5, expected[inner] > 0.5) < iou(
        moved[inner] > 0.5, expected[inner] > 0.5
    )


def test_tracker_follows_a_person_over_several_frames() -> None:
    frame, truth = _photo()
    key_mask = _small(truth, 2)
    key = Keyframe(key_mask, grey(frame, key_mask.shape[1], key_mask.shape[0]), captured_at=0.0)
    tracker = FlowTracker(width=frame.shape[1] // 2)
    # The frame the model saw gets the model's mask as it is, at the model's resolution.
    assert np.array_equal(tracker.track(key, frame, 0.0), key_mask)
    for step in range(1, 6):  # 4 pixels a frame at full size, five frames
        moved = tracker.track(key, np.roll(frame, 4 * step, axis=1), float(step))
    expected = np.roll(truth, 20, axis=1)[:, 40:-40]
    shown = cv2.resize(moved, (frame.shape[1], frame.shape[0]))[:, 40:-40] > 0.5
    assert iou(shown, expected) > 0.9
    assert iou(truth[:, 40:-40], expected) < iou(shown, expected)


def _edge_distance(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Distance (pixels) from each boundary pixel of ``mask`` to the true boundary."""
    far_from_truth = cv2.distanceTransform((~boundary(truth)).astype(np.uint8), cv2.DIST_L2, 5)
    return far_from_truth[boundary(mask)]


def test_refined_edge_lands_on_the_true_edge() -> None:
    frame, truth = _photo()
    # The person over a plain backdrop: the true edge is where the picture's edge is.
    backdrop = np.full_like(frame, (40, 160, 60))
    scene = np.where(truth[..., None], frame, backdrop)
    # What a model gives: a mask at 1/8 of the size that spills 3 pixels over the person.
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    coarse = _small(cv2.dilate(truth.astype(np.uint8), disk) > 0, 8)
    bilinear = to_mask(MaskRefiner(guided=False).refine(coarse, scene))
    guided = to_mask(MaskRefiner(guided=True).refine(coarse, scene))
    plain_d, guided_d = _edge_distance(bilinear > 0.5, truth), _edge_distance(guided > 0.5, truth)
    assert (plain_d <= 2).mean() < 0.3  # bilinear keeps the model's spill...
    assert (guided_d <= 2).mean() > 0.7  # ...the guided edge lands within 2 px of the true one
    assert guided_d.mean() < 0.6 * plain_d.mean()
    feathered = to_mask(MaskRefiner(guided=True, feather=3.0).refine(coarse, scene))
    soft = ((feathered > 0.05) & (feathered < 0.95)).sum()
    assert soft > 1.25 * ((guided > 0.05) & (guided < 0.95)).sum()  # a wider soft edge


def test_mask_path_without_filters_is_plain_upsampling() -> None:
    frame, truth = _photo()
    small = _small(truth, 4)
    path = MaskPath(MaskOptions(smoothing=0.0, hysteresis=0.0, propagate=False, refine=False))
    key = path.keyframe(small, frame, 1.0)
    assert np.array_equal(key.mask, small)
    full = to_mask(path.mask_for(key, frame, 2.0))
    expected = cv2.resize(small, (frame.shape[1], frame.shape[0]))
    assert np.allclose(full, expected, atol=0.51 / 255)  # the Matte rounds to 1/255
