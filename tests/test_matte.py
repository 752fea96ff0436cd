"""The full-size Matte and the blend in integers (issue 14): what the viewer sees is the exact
rounded blend, and the compiled pass gives the guided filter's edge."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.compositing.compositor import composite
from vbg.images import grey, halved, read_image, to_mask, to_matte
from vbg.mask_filters import SURE, MaskRefiner


def test_the_blend_is_the_exact_rounded_mix_for_every_weight() -> None:
    # Every pair of colour values (0-255) under every Matte weight (0-255).
    values = np.arange(256, dtype=np.uint8)
    frame = np.repeat(values[:, None], 256, axis=1)[..., None].repeat(3, axis=2)
    background = np.ascontiguousarray(frame.transpose(1, 0, 2))
    for weight in range(256):
        matte = np.full((256, 256), weight, np.uint8)
        out = composite(frame, matte, background)
        exact = np.floor(
            (frame.astype(np.float64) * weight + background.astype(np.float64) * (255 - weight))
            / 255.0
            + 0.5
        )
        assert np.array_equal(out, exact.astype(np.uint8)), weight


def test_a_float_mask_and_its_matte_blend_the_same() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = rng.random((48, 64), dtype=np.float32)
    assert np.array_equal(
        composite(frame, mask, background), composite(frame, to_matte(mask), background)
    )
    assert np.abs(to_mask(to_matte(mask)) - mask).max() <= 0.5 / 255 + 1e-6


def _reference(refiner: MaskRefiner, mask: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The guided filter as vbg computed it in float32 with OpenCV before the Matte (issue 13's
    code, with the small guide made the same way): the full-size mask in [0, 1]."""
    height, width = frame.shape[:2]
    small_h, small_w = mask.shape
    full_grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    guide = grey(frame, small_w, small_h).astype(np.float32) / 255.0  # the same small guide
    size = (3, 3)
    mean_i, mean_p = cv2.boxFilter(guide, -1, size), cv2.boxFilter(mask, -1, size)
    cov = cv2.boxFilter(guide * mask, -1, size) - mean_i * mean_p
    var = cv2.boxFilter(guide * guide, -1, size) - mean_i * mean_i
    a = cov / (var + refiner.eps)
    b = mean_p - a * mean_i
    trust = np.minimum(np.minimum(mask, 1.0 - mask) / SURE, 1.0)
    a = cv2.boxFilter(a, -1, size) * trust / 255.0
    c = mask + trust * (cv2.boxFilter(b, -1, size) - mask)
    out = cv2.resize(a, (width, height)) * full_grey + cv2.resize(c, (width, height))
    k = refiner.contrast
    out = np.where(out < 0.5, 0.5 + k * (out - 0.5), out)
    return np.clip(out, 0.0, 1.0)


def _photo() -> np.ndarray:
    folder = fixture_path("photos") / "images"
    return read_image(sorted(folder.glob("*.jpg"))[0])


def _model_mask(height: int, width: int) -> np.ndarray:
    """A model's soft mask at a quarter of ``height`` x ``width``: an ellipse, its edge blurred."""
    small = np.zeros((height // 4, width // 4), np.float32)
    cv2.ellipse(small, (width // 8, height // 4), (width // 14, height // 5), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(small, (0, 0), 2.0)


def test_the_compiled_pass_is_the_float_guided_filter() -> None:
    frame = _photo()
    height, width = frame.shape[:2]
    small = _model_mask(height, width)
    for contrast in (1.0, 3.0):
        refiner = MaskRefiner(contrast=contrast)
        matte = refiner.refine(small, frame)
        assert matte.dtype == np.uint8 and matte.shape == (height, width)
        expected = _reference(refiner, small, frame) * 255.0
        # The same to the rounding (and float32 sums in another order), the same outline.
        difference = np.abs(matte - expected)
        assert difference.max() <= 0.5 + 0.01
        outline = (matte > 127) != (expected > 127.5)
        assert outline.mean() < 0.001


def test_pixels_away_from_the_edge_are_the_filter_s_too() -> None:
    # The pass writes 0 or 255 without reading the frame where both neighbouring coefficients
    # give that for any grey value: on noise frames, with masks near 0 and 1 of every kind
    # (where the float sums decide), every pixel must still be the one the linear model gives
    # (computed here at full size in NumPy from the same coefficients), to the rounding.
    rng = np.random.default_rng(7)
    for contrast in (1.0, 2.0, 3.0, 5.0):
        frame = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
        levels = np.array([0.0, 1e-4, 0.002, 0.998, 0.9999, 1.0, 0.3, 0.7], np.float32)
        blocks = levels[rng.integers(0, len(levels), (5, 10))]
        small = np.kron(blocks, np.ones((9, 8), np.float32))  # 45 x 80, areas of one level
        small = cv2.GaussianBlur(small, (0, 0), float(rng.uniform(0.3, 2.0)))
        refiner = MaskRefiner(contrast=contrast)
        matte = refiner.refine(small, frame)
        slope, offset = refiner._coefficients(small, frame)
        value = cv2.resize(slope, (320, 180)) * cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        value += cv2.resize(offset, (320, 180))
        value = np.where(value < 127.5, 127.5 + contrast * (value - 127.5), value)
        expected = np.floor(np.clip(value, 0.0, 255.0) + 0.5)
        difference = np.abs(matte - expected)
        sure = (matte == 0) | (matte == 255)
        assert difference[sure].max() <= 1, contrast  # none written 0 or 255 where it is not
        # Elsewhere the same to the rounding, but for a pixel or two where a steep linear model
        # meets the two bilinear sums' own float rounding (cv2.resize's and the pass's).
        assert (difference > 1).mean() < 0.001, contrast
        assert (matte == 0).mean() > 0.02 and (matte == 255).mean() > 0.02


def test_small_copies_come_from_one_pyramid_per_frame() -> None:
    frame = cv2.resize(_photo(), (1280, 720))
    area = cv2.cvtColor(
        cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
    )
    assert np.abs(grey(frame, 320, 180).astype(int) - area).max() <= 1
    assert halved(frame, 2) is halved(frame, 2)  # made once for this frame
    assert grey(frame, 256, 144) is grey(frame, 256, 144)  # the model's size: 1 ms, made once
    small = cv2.resize(frame, (256, 144), interpolation=cv2.INTER_AREA)
    area = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    assert np.abs(grey(frame, 256, 144).astype(int) - area).max() <= 1
    # Another frame of the same size is its own picture, never the first one's.
    other = np.ascontiguousarray(frame[::-1])
    assert np.array_equal(grey(other, 320, 180), grey(frame, 320, 180)[::-1]) or (
        np.abs(grey(other, 320, 180).astype(int) - grey(frame, 320, 180)[::-1]).max() <= 1
    )
    assert not np.array_equal(grey(other, 256, 144), grey(frame, 256, 144))
    odd = frame[:357, :641]
    assert grey(odd, 64, 36).shape == (36, 64)


def test_a_matte_that_does_not_fit_the_frame_is_refused() -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="differ"):
        composite(frame, np.zeros((24, 32), np.uint8), frame)
    with pytest.raises(ValueError, match="differ"):
        composite(frame, np.zeros((48, 64), np.uint8), np.zeros((48, 63, 3), np.uint8))


def test_a_frame_wider_than_the_refine_width_is_refined_at_its_halving() -> None:
    # A 4K frame is refined at 1920 wide; here a 320-wide photo at 160 (width=200).
    frame = _photo()
    height, width = frame.shape[:2]
    small = _model_mask(height, width)
    full = MaskRefiner(contrast=3.0).refine(small, frame)
    halved_matte = MaskRefiner(contrast=3.0, width=width // 2 + 40).refine(small, frame)
    assert halved_matte.shape == full.shape == (height, width)
    difference = np.abs(halved_matte.astype(int) - full)
    assert difference.mean() < 3.0  # the same edge, a little softer
    assert ((halved_matte > 127) != (full > 127)).mean() < 0.01
