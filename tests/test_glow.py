"""No glow of the room around the person: vbg's steeper mask edge (``edge_contrast``), on the
committed photos with their exact person masks, composited onto a green background."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.commands.cli import _build_parser, build_config
from vbg.compositing.backgrounds import ColorBackground
from vbg.compositing.compositor import Compositor
from vbg.config import config_from_mapping
from vbg.errors import ConfigError
from vbg.images import to_mask
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
    mask = to_mask(path.mask_for(path.keyframe(small, frame), frame))
    return mask, Compositor(ColorBackground(GREEN)).composite(frame, mask, 0.0)


@pytest.mark.parametrize("name", PHOTOS)
def test_the_room_does_not_glow_around_the_person_on_green(name: str) -> None:
    frame, truth = _photo(name)
    small = _model_mask(truth)
    soft_mask, soft = _shown(frame, small, MaskOptions(edge_contrast=1.0))  # the model's edge
    vbg_mask, shown = _shown(frame, small, MaskOptions())
    outside = _within(truth, 1, 15)  # where only green belongs

    def off_green(image: np.ndarray) -> float:
        return float(np.abs(image[outside].astype(np.float32) - GREEN).mean())

    assert off_green(soft) > 5.0  # the model's soft edge lets the room glow through...
    assert off_green(shown) < 0.4 * off_green(soft)  # ...vbg's edge far less
    # The outline and the person's side of the edge are the model's.
    person = soft_mask > 0.5
    assert np.array_equal(vbg_mask > 0.5, person)
    assert np.array_equal(shown[person], soft[person])


def test_the_room_side_is_steeper_on_every_path() -> None:
    frame, truth = _photo(PHOTOS[0])
    small = _model_mask(truth)
    for guided in (True, False):
        model = to_mask(MaskRefiner(guided=guided).refine(small, frame))
        steeper = to_mask(MaskRefiner(guided=guided, contrast=3.0).refine(small, frame))
        expected = np.where(model < 0.5, np.maximum(0.5 + 3.0 * (model - 0.5), 0.0), model)
        assert np.allclose(steeper, expected, atol=2.01 / 255)  # both Mattes round to 1/255
    full = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 3.0)  # a full-size mask: not guided
    expected = np.where(full < 0.5, np.maximum(0.5 + 3.0 * (full - 0.5), 0.0), full)
    steeper = to_mask(MaskRefiner(contrast=3.0).refine(full, frame))
    assert np.allclose(steeper, expected, atol=0.51 / 255)


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
