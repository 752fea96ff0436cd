"""Weights files that are planted, damaged or of the wrong kind: no code runs from a weights file,
and a file vbg cannot run is refused with one line (issue 13, items 4, 7 and 9).

No test touches the network: torch.hub's download is replaced by one that fails (in-process), a
subprocess gets a proxy on a closed port, and the MediaPipe sources are conftest's refusals.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tflite
import torch

from tests.conftest import fixture_path
from vbg.commands.cli import main
from vbg.commands.doctor import check_weights
from vbg.commands.models import list_models
from vbg.errors import ModelError
from vbg.segmentation import models
from vbg.segmentation.models import (
    MODELS,
    cache_state,
    download_state_dict,
    fetch_model,
    is_cached,
    mediapipe_file,
)
from vbg.segmentation.segmenter import (
    MediaPipeSegmenter,
    TorchvisionSegmenter,
    load_segmenter,
    mediapipe_graph,
)

PHOTO = fixture_path("photos", "images", "doctor_saxon.jpg")
FCN = MODELS["fcn_resnet50"]
# A proxy on a port nothing listens on: a subprocess's download fails at once, as offline.
OFFLINE = {f"{k}_proxy": "http://127.0.0.1:9" for k in ("http", "https", "HTTP", "HTTPS")}


class Payload:
    """Unpickling this runs code: it creates ``marker`` (what a planted pickle would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch cache ($TORCH_HOME) whose downloads fail as if offline."""
    home = tmp_path / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise OSError(f"tests do not download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return home


def plant_pickle(path: Path, marker: Path) -> Path:
    """A torch.save file whose unpickling creates ``marker``; checked to really do so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.zeros(1), "payload": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the danger is real: a full unpickle runs it
    assert marker.exists()
    marker.unlink()
    return path


def one_line_error(text: str) -> str:
    """The one ``vbg: error:`` line of a command's stderr (no traceback)."""
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("vbg: error:")]
    assert len(errors) == 1, text
    return errors[0]


# -- item 4: a pickle planted in torch's cache --------------------------------------------------


def test_a_pickle_planted_in_torchs_cache_runs_nothing(
    torch_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "payload-ran"
    planted = plant_pickle(FCN.cache_path, marker)
    assert planted == torch_home / "hub" / "checkpoints" / "fcn_resnet50_coco-1167a1af.pth"

    assert cache_state(FCN) == "damaged" and not is_cached(FCN)
    weights = check_weights("fcn_resnet50")
    assert "damaged" in weights.found and not weights.ok  # vbg doctor: not "cached"
    assert "damaged (another SHA-256)" in next(r for r in list_models() if "fcn_resnet50 " in r)

    assert main(["models", "fetch", "fcn_resnet50"]) == 1  # not 0: nothing was fetched
    line = one_line_error(capsys.readouterr().err)
    assert "damaged" in line and "could not be downloaded again" in line
    out = tmp_path / "out.png"
    assert main(["process", str(PHOTO), "-o", str(out), "--model", "fcn_resnet50"]) == 1
    assert "damaged" in one_line_error(capsys.readouterr().err)
    assert main(["doctor", "--model", "fcn_resnet50", "--source", str(PHOTO)]) in (0, 1)
    assert "model weights: the cached" in capsys.readouterr().out
    assert not marker.exists() and not out.exists()
    assert planted.exists()  # left for a download to replace (a failed one changes nothing)


def test_the_planted_pickle_runs_nothing_from_the_command_line(tmp_path: Path) -> None:
    """The same through ``python -m vbg`` offline: a one-line refusal, exit 1, no payload."""
    marker = tmp_path / "payload-ran"
    plant_pickle(tmp_path / "torch" / "hub" / "checkpoints" / FCN.cache_path.name, marker)
    env = {**os.environ, **OFFLINE, "no_proxy": "", "TORCH_HOME": str(tmp_path / "torch")}
    out = tmp_path / "out.png"
    result = subprocess.run(
        [sys.executable, "-m", "vbg", "process", str(PHOTO), "-o", str(out),
         "--model", "fcn_resnet50"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "could not be downloaded again" in one_line_error(result.stderr)
    assert not marker.exists() and not out.exists()


def test_a_pickle_whose_name_hash_matches_is_still_not_unpickled(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.hub's names carry only 8 hex digits of the SHA-256: a planted file can be made to
    match them (2**32 tries). It passes the hash check here, and weights_only=True refuses it."""
    marker = tmp_path / "payload-ran"
    planted = plant_pickle(FCN.cache_path, marker)
    prefix = models.file_sha256(planted)[:8]
    monkeypatch.setattr(models, "_expected_digest", lambda info: prefix)
    assert is_cached(FCN)
    with pytest.raises(ModelError, match="that can be loaded safely") as error:
        download_state_dict(FCN)
    assert "\n" not in str(error.value) and not marker.exists()


def test_a_damaged_cached_file_is_downloaded_again(
    torch_home: Path, fast_weights: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A cached file with another SHA-256 is replaced by a fresh download, then loaded."""
    info = MODELS["lraspp_mobilenet_v3_large"]
    info.cache_path.write_bytes(b"half a download")
    good = models.file_sha256(fast_weights)[:8]  # the stand-in download's hash prefix
    monkeypatch.setattr(models, "_expected_digest", lambda info: good)
    fetched = []

    def download(url: str, dst: str, hash_prefix: str, **kwargs: object) -> None:
        assert url == info.weights.url and hash_prefix == good
        fetched.append(url)
        shutil.copy(fast_weights, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    with caplog.at_level(logging.WARNING, logger="vbg"):
        state = download_state_dict(info)
    assert fetched and "damaged" in caplog.text and "downloading them again" in caplog.text
    assert is_cached(info) and state.keys() == torch.load(fast_weights).keys()
    download_state_dict(info)
    assert len(fetched) == 1  # intact now: not downloaded twice


def test_every_torchvision_file_name_carries_its_hash() -> None:
    for info in MODELS.values():
        if info.family == "torchvision":
            assert len(models._expected_digest(info)) >= 8, info.cache_path.name


# -- item 9: a damaged MediaPipe file in vbg's cache --------------------------------------------


@pytest.fixture
def damaged_cache(model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the MediaPipe cache whose mediapipe_selfie file has one byte changed."""
    cache = tmp_path / "cache"
    shutil.copytree(model_cache, cache)
    path = cache / MODELS["mediapipe_selfie"].file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    monkeypatch.setenv("VBG_CACHE_DIR", str(cache))
    return cache


def test_a_damaged_mediapipe_file_is_called_damaged_and_refused_offline(
    damaged_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    info = MODELS["mediapipe_selfie"]

    def absent(info: models.ModelInfo) -> bytes:
        raise LookupError("mediapipe is not installed")

    monkeypatch.setitem(models._SOURCES, "installed", absent)
    assert cache_state(info) == "damaged"
    assert "damaged" in check_weights("mediapipe_selfie").found
    with caplog.at_level(logging.WARNING, logger="vbg"), pytest.raises(ModelError) as error:
        mediapipe_file(info, None)
    assert "is damaged (another SHA-256) and could not be fetched again" in str(error.value)
    assert "not in the model cache" not in str(error.value) and "\n" not in str(error.value)
    assert "damaged" in caplog.text and "fetching it again" in caplog.text


def test_a_damaged_mediapipe_file_is_fetched_again(
    damaged_cache: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = MODELS["mediapipe_selfie"]
    real = (model_cache / info.file).read_bytes()
    monkeypatch.setitem(models._SOURCES, "installed", lambda info: real)
    assert fetch_model("mediapipe_selfie") == damaged_cache / info.file
    assert (damaged_cache / info.file).read_bytes() == real and is_cached(info)


# -- item 7: .tflite files of the wrong model, or damaged ---------------------------------------


def test_the_other_variants_file_is_refused_naming_its_model(
    model_cache: Path, tmp_path: Path
) -> None:
    landscape = tmp_path / "selfie_segmentation_landscape.tflite"
    shutil.copy(model_cache / landscape.name, landscape)
    with pytest.raises(ModelError, match="pass --model mediapipe_selfie_landscape") as error:
        load_segmenter("mediapipe_selfie", weights=landscape, device="cpu")
    assert "is the mediapipe_selfie_landscape model's file" in str(error.value)
    # Another file with the landscape graph (a fine-tuned variant, say): known by its shapes.
    variant = tmp_path / "variant.tflite"
    data = bytearray(landscape.read_bytes())
    data[-1] ^= 1  # in the padding after the tables: the same graph, another SHA-256
    variant.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="takes 1x144x256x3 .* pass --model mediapipe_selfie_la"):
        load_segmenter("mediapipe_selfie", weights=variant, device="cpu")
    segmenter = load_segmenter("mediapipe_selfie_landscape", weights=variant, device="cpu")
    mask = segmenter.segment(cv2.imread(str(PHOTO)))
    assert np.isfinite(mask).all() and mask.max() > 0.5  # it runs, and finds the person


def test_the_wrong_variant_is_one_line_at_the_command_line(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landscape = model_cache / MODELS["mediapipe_selfie_landscape"].file
    out = tmp_path / "out.png"
    argv = ["process", str(PHOTO), "-o", str(out), "--model", "mediapipe_selfie"]
    assert main([*argv, "--weights", str(landscape)]) == 1
    assert "--model mediapipe_selfie_landscape" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def weight_spans(data: bytes) -> list[tuple[int, int]]:
    """Where the buffers (the weights) lie in a .tflite file: (start, end) byte ranges."""
    model = tflite.Model.GetRootAsModel(data, 0)
    spans = []
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        if buffer.DataLength():
            start = buffer._tab.Vector(buffer._tab.Offset(4))
            spans.append((start, start + buffer.DataLength()))
    return sorted(spans)


def test_nan_weights_are_refused_at_load(model_cache: Path, tmp_path: Path) -> None:
    info = MODELS["mediapipe_selfie_landscape"]
    data = bytearray((model_cache / info.file).read_bytes())
    start, end = max(weight_spans(bytes(data)), key=lambda span: span[1] - span[0])
    data[start:end] = np.full((end - start) // 2, np.nan, "<f2").tobytes()  # float16 NaNs
    path = tmp_path / "nan.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="NaN or infinite values from a blank picture"):
        load_segmenter(info.name, weights=path, device="cpu")


class NaNModel(torch.nn.Module):
    """A model whose every output is NaN (as damaged weights give for some pictures)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], float("nan"))


def test_a_nan_mask_is_an_error_not_a_picture() -> None:
    frame = cv2.imread(str(PHOTO))
    mediapipe = MediaPipeSegmenter(NaNModel(), device=torch.device("cpu"), size=(64, 64), name="m")
    with pytest.raises(ModelError, match="The model m gave NaN or infinite values"):
        mediapipe.segment(frame)

    class NaNLogits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": torch.full((1, 21, *x.shape[2:]), float("nan"))}

    torchvision = TorchvisionSegmenter(
        NaNLogits(), device=torch.device("cpu"), inference_size=32, name="t"
    )
    with pytest.raises(ModelError, match="The model t gave NaN or infinite values"):
        torchvision.segment(frame)


# -- the fuzz: 200 byte-mutated copies of MediaPipe's files --------------------------------------

FUZZ_CASES = 200
# Every case is loaded as a run loads it (which runs the graph on a blank picture); a loaded one
# then makes a mask of a photo when its weights were mutated, and one in FRAME_EVERY of the
# others; one case in FULL_EVERY goes through load_segmenter and segment (JIT freeze: slow).
FRAME_EVERY = 4
FULL_EVERY = 40


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded mutation: bytes flipped in the tables (the flatbuffer's header and tables) or
    in the weights, a truncation, a zeroed range or a range of random bytes."""
    spans = weight_spans(data)
    out = bytearray(data)
    kind = rng.choice(["tables", "weights", "truncate", "zeros", "random"])
    if kind == "tables":
        tables = [*range(0, spans[0][0]), *range(spans[-1][1], len(data))]
        for _ in range(rng.randint(1, 6)):
            out[rng.choice(tables)] ^= 1 << rng.randrange(8)
    elif kind == "weights":
        for _ in range(rng.randint(1, 6)):
            start, end = rng.choice(spans)
            out[rng.randrange(start, end)] = rng.randrange(256)
    elif kind == "truncate":
        out = out[: rng.randrange(len(out))]
    else:
        start, size = rng.randrange(len(out)), rng.choice([4, 64, 1024, 16384])
        end = min(len(out), start + size)
        out[start:end] = bytes(end - start) if kind == "zeros" else rng.randbytes(end - start)
    return kind, bytes(out)


@pytest.fixture(scope="module")
def fuzz_results(
    model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[tuple[str, str, str]]]:
    """(model, kind, outcome) of each case; outcome "mask", "loaded", "refused" or what went
    wrong. One torch thread: the cases are small, and the suite shares its cores."""
    rng = random.Random(13)
    folder = tmp_path_factory.mktemp("fuzz")
    frame = cv2.imread(str(PHOTO))
    originals = {
        name: (model_cache / MODELS[name].file).read_bytes()
        for name in ("mediapipe_selfie", "mediapipe_selfie_landscape")
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = []
    try:
        for case in range(FUZZ_CASES):
            name = rng.choice(sorted(originals))
            kind, data = mutate(originals[name], rng)
            path = folder / f"case{case:03d}.tflite"
            path.write_bytes(data)
            full = case % FULL_EVERY == 0
            photo = kind == "weights" or case % FRAME_EVERY == 0
            results.append((name, kind, run_case(name, path, frame, full=full, photo=photo)))
    finally:
        torch.set_num_threads(threads)
    yield results


def run_case(name: str, path: Path, frame: np.ndarray, *, full: bool, photo: bool) -> str:
    """Load ``path`` as model ``name`` and, with ``photo``, make a mask of ``frame``: "mask"
    (finite, in [0, 1]), "loaded" (no mask asked for), "refused" (a one-line ModelError), else
    what went wrong."""
    info = MODELS[name]
    try:
        if full:
            mask = load_segmenter(name, weights=path, device="cpu").segment(frame)
        else:  # the load's checks without MediaPipeSegmenter's JIT freeze, then its predict
            graph = mediapipe_graph(info, path)
            if not photo:
                return "loaded"
            segmenter = MediaPipeSegmenter(torch.nn.Identity(), device=torch.device("cpu"),
                                           size=info.input_size, name=name)  # fmt: skip
            segmenter.model = graph  # eager: the same numbers as the frozen graph
            mask = segmenter.segment(frame)
    except ModelError as exc:
        return "refused" if "\n" not in str(exc) and str(exc) else f"multi-line: {exc!r}"
    except Exception as exc:  # noqa: BLE001 - what the test is looking for
        return f"escaped: {type(exc).__name__}: {exc}"
    finite = bool(np.isfinite(mask).all()) and mask.min() >= 0 and mask.max() <= 1
    return "mask" if finite and mask.shape == frame.shape[:2] else "bad mask"


def test_byte_mutated_tflite_files_give_a_mask_or_one_line(
    fuzz_results: list[tuple[str, str, str]],
) -> None:
    wrong = [result for result in fuzz_results if result[2] not in ("mask", "loaded", "refused")]
    assert not wrong, wrong
    outcomes = {outcome for _, _, outcome in fuzz_results}
    assert outcomes == {"mask", "loaded", "refused"}  # the fuzz reaches past the parser
    kinds = {kind for _, kind, outcome in fuzz_results if outcome == "refused"}
    assert {"tables", "truncate"} <= kinds


def test_a_damaged_tflite_is_one_line_at_the_command_line(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (model_cache / MODELS["mediapipe_selfie"].file).read_bytes()
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(data[: len(data) - 40000])  # the tables cut off
    out = tmp_path / "out.png"
    argv = ["process", str(PHOTO), "-o", str(out), "--model", "mediapipe_selfie"]
    assert main([*argv, "--weights", str(damaged)]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert "is not a TensorFlow Lite model that vbg can run" in line and str(damaged) in line
    assert not out.exists()
