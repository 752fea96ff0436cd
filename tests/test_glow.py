"""No glow of the room around the person: vbg's steeper mask edge (``edge_contrast``), on the
committed photos with their exact person masks, composited onto a green background."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.commands.cli import _build_parser, build_config
from vbg.commands.evaluate import iou
from vbg.compositing.backgrounds import ColorBackground
from vbg.compositing.compositor import Compositor
from vbg.config import config_from_mapping
from vbg.errors import ConfigError
from vbg.mask_filters import EDGE_CONTRAST, MaskOptions, MaskPath, MaskRefiner

GREEN = (64, 177, 0)  # #00B140 as B, G, R
PHOTOS = ("doctor_saxon", "girl_shibuya", "two_architecture", "woman_porch")


def _photo(name: str) -> tuple[np.ndarray, np.ndarray]:
    root = fixture_path("photos")
    frame = cv2.imread(str(root / "images" / f"{name}.jpg"))
    truth = cv2.imread(str(root / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
    return frame, truth


def _model_mask(truth: np.ndarray) -> np.ndarray:
    """What a selfie model gives: the person at a quarter of the size with a soft edge."""
    height, width = truth.shape
    small = cv2.resize(
        truth.astype(np.float32), (width // 4, height // 4), interpolation=cv2.INTER_AREA
    )
    return cv2.GaussianBlur(small, (0, 0), 1.0)


def _within(mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """The pixels ``low`` to ``high`` px (Euclidean) outside the boolean ``mask``."""
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    return (distance >= low) & (distance <= high)


def _shown(frame: np.ndarray, small: np.ndarray, options: MaskOptions) -> tuple[np.ndarray, ...]:
    """(vbg's full-size mask, the frame on green) with the mask filters ``options``."""
    path = MaskPath(options)
    mask = path.mask_for(path.keyframe(small, frame), frame)
    return mask, Compositor(ColorBackground(GREEN)).composite(frame, mask, 0.0)


@pytest.mark.parametrize("name", PHOTOS)
def test_the_room_does_not_glow_around_the_person_on_green(name: str) -> None:
    frame, truth = _photo(name)
    small = _model_mask(truth)
    soft_mask, soft = _shown(frame, small, MaskOptions(edge_contrast=1.0))  # the model's edge
    vbg_mask, shown = _shown(frame, small, MaskOptions())
    outside = _within(truth, 1, 15)  # where only green belongs
    inside = _within(~truth, 1, 3)  # the person's own rim, where only the person belongs

    def off_green(image: np.ndarray) -> float:
        return float(np.abs(image[outside].astype(np.float32) - GREEN).mean())

    def off_person(image: np.ndarray) -> float:
        return float(cv2.absdiff(image, frame)[inside].mean())

    assert off_green(soft) > 5.0  # the model's soft edge lets the room glow through...
    assert off_green(shown) < 0.35 * off_green(soft)  # ...vbg's edge far less
    assert off_person(shown) < 0.5 * off_person(soft)  # and the rim is less see-through
    assert iou(vbg_mask > 0.5, soft_mask > 0.5) > 0.995  # the same outline


def test_the_contrast_is_the_same_on_every_path() -> None:
    frame, truth = _photo(PHOTOS[0])
    mask = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 3.0)
    steeper = np.clip(0.5 + 3.0 * (mask - 0.5), 0.0, 1.0)
    for guided in (True, False):  # a full-size mask is not guided: the contrast alone
        out = MaskRefiner(guided=guided, contrast=3.0).refine(mask, frame)
        assert np.allclose(out, steeper, atol=1e-5)
    small = _model_mask(truth)
    plain = MaskRefiner(guided=False).refine(small, frame)
    assert np.allclose(
        MaskRefiner(guided=False, contrast=3.0).refine(small, frame),
        np.clip(0.5 + 3.0 * (plain - 0.5), 0.0, 1.0),
        atol=1e-5,
    )


def test_raw_masks_keep_the_models_edge() -> None:
    # --no-refine is the model's own mask upsampled: the edge contrast comes with refine.
    assert MaskPath(MaskOptions(refine=False)).refiner.contrast == 1.0
    assert MaskPath(MaskOptions()).refiner.contrast == EDGE_CONTRAST


def test_edge_contrast_is_a_key_and_a_flag(tmp_path: Path) -> None:
    config_file = tmp_path / "vbg.toml"
    config_file.write_text("edge_contrast = 2.0\n")
    args = _build_parser().parse_args(["run", "--config", str(config_file)])
    assert build_config(args).mask_options.edge_contrast == 2.0
    args = _build_parser().parse_args(
        ["process", "in.png", "-o", "out.png", "--config", str(config_file), "--edge-contrast", "1"]
    )
    assert build_config(args).mask_options.edge_contrast == 1.0
    assert config_from_mapping({}).mask_options.edge_contrast == EDGE_CONTRAST
    with pytest.raises(ConfigError, match="'edge_contrast' must be between 1 and 10"):
        config_from_mapping({"edge_contrast": 0.5})
