"""MediaPipe's selfie segmentation run in torch: fetching, the .tflite importer, and parity with
MediaPipe's own runtime (reference masks in tests/fixtures/mediapipe, made by
tools/make_parity_fixtures.py from photos of the full data set in ../shared/data)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import MEDIAPIPE, MemorySink, data_path, decode_video, fixture_path
from vbg.commands.frame_path import make_processor
from vbg.config import RunConfig
from vbg.errors import ModelError, SourceError
from vbg.images import Frame
from vbg.pipeline import Pipeline
from vbg.segmentation.models import MODELS, fetch_model, is_cached
from vbg.segmentation.segmenter import MediaPipeSegmenter, half_precision, load_segmenter
from vbg.segmentation.tflite_graph import TFLiteGraph
from vbg.sources.capture import Source, VideoFileSource
from vbg.stats import Stats

FIXTURES = Path(__file__).parent / "fixtures" / "mediapipe"
PHOTOS = {
    "skimage_astronaut": "images/skimage_astronaut.png",
    "volcomix_doctor-5871743_640": "images/volcomix_doctor-5871743_640.jpg",
    "volcomix_woman-5883428_1280": "images/volcomix_woman-5883428_1280.jpg",
    "000000000110": "images_gt/coco128_person/images/000000000110.jpg",
    "000000000436": "images_gt/coco128_person/images/000000000436.jpg",
}


def test_fetch_puts_checked_files_in_the_cache(model_cache: Path) -> None:
    for name in MEDIAPIPE:
        info = MODELS[name]
        assert info.cache_path == model_cache / info.file
        assert is_cached(info)  # present, and its SHA-256 is the expected one
        assert fetch_model(name) == info.cache_path  # a second fetch finds it


def test_importer_builds_the_graph_of_the_real_files(model_cache: Path) -> None:
    for name, shape in (
        ("mediapipe_selfie", (256, 256)),
        ("mediapipe_selfie_landscape", (144, 256)),
    ):
        graph = TFLiteGraph(MODELS[name].cache_path)
        assert graph.input_shapes == [(1, *shape, 3)] and graph.output_shapes == [(1, *shape, 1)]
        with torch.inference_mode():
            out = graph(torch.rand(1, 3, *shape))
        assert out.shape == (1, 1, *shape)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # a probability


@pytest.mark.parametrize("name", MEDIAPIPE)
def test_masks_match_mediapipes_own_runtime(model_cache: Path, name: str) -> None:
    # The reference masks were made from these photos of the full data set (COCO photos are not
    # committed: their licences vary), so this test needs ../shared/data.
    photos = {stem: data_path(*photo.split("/")) for stem, photo in PHOTOS.items()}
    segmenter = load_segmenter(name, weights=None, device="cpu")
    for stem, photo in photos.items():
        frame = cv2.imread(str(photo))
        reference = cv2.imread(str(FIXTURES / name / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        reference = reference.astype(np.float32) / 65535.0
        mask = segmenter.segment(frame)
        assert mask.shape == frame.shape[:2] == reference.shape
        mad = float(np.abs(mask - reference).mean())
        ours, theirs = mask > 0.5, reference > 0.5
        iou = (ours & theirs).sum() / max(1, (ours | theirs).sum())
        assert theirs.mean() > 0.05, stem  # the photo really has a person to match
        assert mad <= 0.01, (stem, mad)
        assert iou >= 0.99, (stem, iou)


class _LockStepSource(Source):
    """The first ``frames`` frames of a video file, as a camera that sends its next frame only
    once the pipeline has put the last one out, and its second only once the model has made a
    mask: the run shows every frame and has masks however busy the machine is, with no timing
    assumed. (A real camera does not wait: what the pipeline then skips is test_pipeline's.)"""

    HANG_GUARD = 120.0  # seconds: only so that a broken pipeline cannot hang the test run

    def __init__(self, path: Path, frames: int, stats: Stats) -> None:
        self._file = VideoFileSource(path, realtime=False)
        self.width, self.height, self.fps = self._file.width, self._file.height, self._file.fps
        self.description = f"{path.name}, frame by frame"
        self._frames, self._stats, self._sent = frames, stats, 0
        self.abandoned = threading.Event()

    def _wait(self, ready: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.HANG_GUARD
        while not ready():
            if self.abandoned.wait(0.005):
                return False
            if time.monotonic() > deadline:
                raise SourceError(f"the pipeline is stuck after {self._sent} frames")
        return True

    def read(self) -> Frame | None:
        if self._sent == self._frames:
            return None
        sent = self._sent
        if sent and not self._wait(
            lambda: self._stats.get("frames_out") >= sent and self._stats.get("masks") >= 1
        ):
            return None
        self._sent += 1
        return self._file.read()

    def close(self) -> None:
        self._file.close()


def test_a_mediapipe_model_runs_the_live_pipeline(model_cache: Path) -> None:
    """The landscape model on the pipeline's inference thread, as ``vbg run`` builds it: every
    frame comes out, and once there is a mask the man in the clip stands in front of green."""
    clip, frames = fixture_path("clip.mp4"), 12
    config = RunConfig(
        source=str(clip), model="mediapipe_selfie_landscape", device="cpu",
        background="color:#00B140", preview=False, virtual_cam=False,
    )  # fmt: skip
    threads = torch.get_num_threads()  # a live run on the CPU leaves a core free: process-wide
    stats = Stats()
    sink = MemorySink()
    source = _LockStepSource(clip, frames, stats)
    try:
        processor = make_processor(config, live=True)
        assert processor.segmenter.name == "mediapipe_selfie_landscape"
        pipeline = Pipeline(source, processor, [sink], stats=stats)
        pipeline.start()
        try:
            assert pipeline.wait(source.HANG_GUARD), "the pipeline never finished"
        finally:
            pipeline.stop()  # raises what a stage raised
    finally:
        source.abandoned.set()
        source.close()
        torch.set_num_threads(threads)
    assert stats.get("frames_out") == frames == len(sink.frames) and sink.closed
    assert stats.get("frames_skipped") == 0  # in lock step: every frame was composited
    assert stats.get("masks") >= 1
    shown = decode_video(clip)[:frames]
    green = np.array((0x40, 0xB1, 0x00))
    # The first two frames may come before the first mask (then they are all green); after
    # that each frame shows the man, in front of green, with his pixels from the same frame.
    for out, frame in list(zip(sink.frames, shown, strict=True))[2:]:
        person = np.abs(out.astype(int) - green).sum(axis=2) > 60
        assert 0.1 < person.mean() < 0.5  # the man, not the hillside around him
        assert person[90:130, 140:180].mean() > 0.95  # his chest, in the middle of the frame
        assert not person[:30, :40].any() and not person[:30, -40:].any()  # the hillside
        core = cv2.erode(person.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert np.abs(out[core].astype(int) - frame[core]).mean() < 2


def _fake_mediapipe(root: Path, name: str, data: bytes) -> None:
    folder = root / "mediapipe" / "modules" / "selfie_segmentation"
    folder.mkdir(parents=True)
    (root / "mediapipe" / "__init__.py").write_text("")
    (folder / MODELS[name].file).write_bytes(data)


def test_fetch_refuses_a_file_with_the_wrong_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    _fake_mediapipe(tmp_path / "site", "mediapipe_selfie", b"TFL3 but not the real model")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ModelError, match="installed: .*checksum mismatch.*not saved"):
        fetch_model("mediapipe_selfie", sources=("installed",))
    assert not MODELS["mediapipe_selfie"].cache_path.exists()


def test_fetch_takes_the_file_from_an_installed_mediapipe(
    model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = (model_cache / MODELS["mediapipe_selfie"].file).read_bytes()
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "cache"))
    _fake_mediapipe(tmp_path / "site", "mediapipe_selfie", real)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = fetch_model("mediapipe_selfie", sources=("installed",))
    assert path == tmp_path / "cache" / "selfie_segmentation.tflite" and path.read_bytes() == real


def test_a_fixed_input_model_refuses_an_inference_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="fixed 256x144 input"):
        load_segmenter("mediapipe_selfie_landscape", weights=None, device="cpu", inference_size=64)


def test_a_model_file_that_cannot_be_read_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root (this test's user) reads any file: the refusal the OS gives others is played here.
    import vbg.segmentation.segmenter as segmenter_module

    weights = tmp_path / "selfie.tflite"
    weights.write_bytes(b"\x00" * 64)

    def refused(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(segmenter_module, "file_sha256", refused)
    with pytest.raises(ModelError, match="selfie.tflite' cannot be read: Permission denied"):
        load_segmenter("mediapipe_selfie_landscape", weights=weights, device="cpu")


def test_a_file_that_is_not_tflite_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        TFLiteGraph(junk)
    with pytest.raises(ModelError, match="cannot be read"):
        TFLiteGraph(tmp_path / "missing.tflite")


def test_copying_the_cache_elsewhere_keeps_it_usable(model_cache: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.tflite"
    shutil.copy(model_cache / MODELS["mediapipe_selfie"].file, copy)
    segmenter = load_segmenter("mediapipe_selfie", weights=copy, device="cpu")
    assert segmenter.predict(np.zeros((90, 160, 3), np.uint8)).shape == (256, 256)


def test_float16_gives_the_float32_mask(model_cache: Path) -> None:
    """--precision float16 runs the model in half precision; on the CPU here it is slow, but it
    is the same arithmetic path, and the masks agree with float32's."""
    assert not half_precision("auto", torch.device("cpu"))
    assert not half_precision("auto", torch.device("cuda"))  # measured: no faster on an H200
    assert half_precision("float16", torch.device("cpu"))
    with pytest.raises(ModelError, match="Unknown precision 'double'"):
        half_precision("double", torch.device("cpu"))
    frame = cv2.imread(str(fixture_path("photos", "images", "doctor_saxon.jpg")))
    for name in MEDIAPIPE:
        single = load_segmenter(name, weights=None, device="cpu", precision="float32")
        half = load_segmenter(name, weights=None, device="cpu", precision="float16")
        assert single.dtype == torch.float32 and half.dtype == torch.float16
        a, b = single.predict(frame), half.predict(frame)
        assert b.dtype == np.float32 and np.abs(a - b).max() < 0.05
        assert ((a > 0.5) & (b > 0.5)).sum() / ((a > 0.5) | (b > 0.5)).sum() > 0.999


@pytest.mark.parametrize("size", [(1280, 720), (2560, 1440), (1281, 720)])
def test_whole_step_sampling_is_the_corner_aligned_warp(
    model_cache: Path, size: tuple[int, int]
) -> None:
    """1280x720 to 256x144 takes every 5th pixel: the same bytes as MediaPipe's warp."""
    segmenter = load_segmenter("mediapipe_selfie_landscape", weights=None, device="cpu")
    assert isinstance(segmenter, MediaPipeSegmenter)
    width, height = size
    frame = np.random.default_rng(3).integers(0, 256, (height, width, 3), np.uint8)
    corners = np.array([[0, 0], [width, 0], [0, height]], np.float32)
    warp = cv2.getAffineTransform(corners, np.array([[0, 0], [256, 0], [0, 144]], np.float32))
    expected = cv2.warpAffine(frame, warp, (256, 144), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(segmenter._sample(frame), expected)


def test_a_second_start_runs_the_frozen_graph_kept_in_the_cache(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vbg.segmentation.segmenter as segmenter_module

    frame = cv2.imread(str(fixture_path("photos", "images", "doctor_saxon.jpg")))
    name = "mediapipe_selfie_landscape"
    first = load_segmenter(name, weights=None, device="cpu")
    kept = sorted((model_cache / "frozen").glob(f"{name}-*-cpu-float32-*.pt"))
    assert len(kept) == 1  # made on the first start, named after the file's checksum
    expected = first.predict(frame)

    def no_importer(*args: object) -> None:
        raise AssertionError("the .tflite file was read again")

    with monkeypatch.context() as patched:  # the next start does not read the .tflite file
        patched.setattr(segmenter_module, "mediapipe_graph", no_importer)
        again = load_segmenter(name, weights=None, device="cpu")
    assert np.array_equal(again.predict(frame), expected)

    kept[0].write_bytes(b"damaged")  # a damaged cache file is made again from the .tflite file
    rebuilt = load_segmenter(name, weights=None, device="cpu")
    assert np.array_equal(rebuilt.predict(frame), expected)
    assert kept[0].stat().st_size > 100_000
