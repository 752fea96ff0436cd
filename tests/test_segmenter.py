from __future__ import annotations

import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision.models._api
from torchvision.models import segmentation

from conftest import fixture_path
from vbg.errors import ModelError
from vbg.segmentation.models import MODELS, model_info
from vbg.segmentation.segmenter import (
    TorchvisionSegmenter,
    build_model,
    choose_device,
    load_segmenter,
)


def test_local_state_dict_loads_into_the_torchvision_model(fcn_weights: Path) -> None:
    segmenter = load_segmenter("fcn_resnet50", weights=fcn_weights, device="cpu")
    assert isinstance(segmenter, TorchvisionSegmenter)
    assert segmenter.person_index == 15
    assert segmenter.inference_size == MODELS["fcn_resnet50"].inference_size  # the model's own
    model = segmenter.model
    state = torch.load(fcn_weights, weights_only=True)
    loaded = model.state_dict()
    # Every weight of the main network is the saved one; the auxiliary head is dropped.
    assert model.aux_classifier is None
    assert set(loaded) == {key for key in state if not key.startswith("aux_classifier.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_segmenter_gives_a_person_probability_at_frame_size(fcn_weights: Path) -> None:
    frame = cv2.imread(str(fixture_path("photos", "images", "doctor_saxon.jpg")))  # 320 x 214
    segmenter = load_segmenter("fcn_resnet50", weights=fcn_weights, device="cpu", inference_size=64)
    assert segmenter.inference_size == 64
    small = segmenter.predict(frame)
    assert small is not None
    height, width = frame.shape[:2]
    assert min(small.shape) == segmenter.inference_size
    assert small.shape[1] / small.shape[0] == pytest.approx(width / height, rel=0.02)
    mask = segmenter.segment(frame)
    assert mask.shape == (height, width) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0


def test_segmenter_preprocesses_like_torchvision(fcn_weights: Path) -> None:
    """The person channel equals the model's own softmax on the normalised RGB input."""
    frame = cv2.imread(str(fixture_path("photos", "images", "girl_shibuya.jpg")))
    model = build_model("fcn_resnet50", fcn_weights)
    segmenter = TorchvisionSegmenter(model, device=torch.device("cpu"), inference_size=64)
    assert frame.shape[:2] == (213, 320)
    small = cv2.resize(frame, (96, 64), interpolation=cv2.INTER_AREA)  # the short side to 64
    rgb = torch.from_numpy(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.inference_mode():
        expected = model(((rgb - mean) / std).unsqueeze(0))["out"].softmax(1)[0, 15].numpy()
    np.testing.assert_allclose(segmenter.predict(frame), expected, atol=1e-5)


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "lraspp.pth"
    torch.save(
        segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(),
        path,
    )
    with pytest.raises(ModelError, match="do not fit model 'fcn_resnet50'"):
        build_model("fcn_resnet50", path)


def test_bad_weights_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist.*--weights"):
        build_model("fcn_resnet50", tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="is not a PyTorch state dict"):
        build_model("fcn_resnet50", corrupt)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": object()}, pickled)  # needs full unpickling: refused by weights_only
    with pytest.raises(ModelError, match="loaded safely"):
        build_model("fcn_resnet50", pickled)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match="Unknown model 'unet'.*fcn_resnet50.*lraspp"):
        model_info("unet")


def test_offline_and_uncached_names_the_weights_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    # Stands in for the network being down, where torchvision fetches the file.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    assert not model_info("fcn_resnet50").cache_path.exists()
    with pytest.raises(ModelError, match="Could not download the fcn_resnet50 weights.*--weights"):
        build_model("fcn_resnet50")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_is_an_error() -> None:
    assert choose_device("auto").type in ("cpu", "mps")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        choose_device("cuda")
