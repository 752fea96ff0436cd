"""vbg eval: the measures on hand-made masks with known values, and the command on real data."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from conftest import data_path, fixture_path
from vbg.commands.cli import main
from vbg.commands.evaluate import (
    FlickerMeter,
    boundary,
    boundary_f,
    dtssd,
    evaluate,
    iou,
    load_samples,
    mae,
)
from vbg.compositing.backgrounds import BlurBackground
from vbg.compositing.compositor import Compositor
from vbg.errors import SourceError
from vbg.mask_filters import FlowPropagator, MaskOptions
from vbg.processor import FrameProcessor
from vbg.segmentation.segmenter import Segmenter


def _square(rows: slice, cols: slice, shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_iou_of_hand_made_masks() -> None:
    truth = _square(slice(10, 20), slice(10, 20))
    assert iou(truth, truth) == 1.0
    assert iou(_square(slice(10, 20), slice(12, 22)), truth) == pytest.approx(80 / 120)
    assert iou(_square(slice(30, 35), slice(30, 35)), truth) == 0.0
    assert iou(np.zeros_like(truth), np.zeros_like(truth)) == 1.0


def test_boundary_f_of_hand_made_masks() -> None:
    truth = _square(slice(10, 30), slice(10, 30))  # 20 x 20: a boundary ring of 76 pixels
    half = _square(slice(10, 30), slice(10, 20))  # its left half: a ring of 56 pixels
    assert boundary(truth).sum() == 76 and boundary(half).sum() == 56
    # Within 1 pixel, 40 of the half's boundary pixels lie on the truth's and 40 of the truth's
    # on the half's: F = 2 * 40 / (56 + 76).
    assert boundary_f(half, truth, tolerance=1) == pytest.approx(80 / 132)
    assert boundary_f(truth, truth, tolerance=1) == 1.0
    shifted = _square(slice(10, 30), slice(11, 31))  # one pixel to the right: all within 1
    assert boundary_f(shifted, truth, tolerance=1) == 1.0
    far = _square(slice(10, 30), slice(15, 35))
    assert boundary_f(far, truth, tolerance=1) < boundary_f(far, truth, tolerance=5) == 1.0
    assert boundary_f(np.zeros_like(truth), truth) == 0.0


def test_mae_and_dtssd_of_hand_made_masks() -> None:
    truth = np.zeros((10, 10), bool)
    truth[:5] = True
    assert mae(np.full((10, 10), 0.25, np.float32), truth) == pytest.approx(0.5)
    steady = np.zeros((10, 10), np.float32)
    moved = truth.copy()
    moved[:, :5] = False  # 25 of 100 pixels change in the truth, none in the prediction
    assert dtssd(steady, steady, moved, truth) == pytest.approx(100 * np.sqrt(25 / 100))
    assert dtssd(moved.astype(np.float32), truth.astype(np.float32), moved, truth) == 0.0


class _TruthSegmenter(Segmenter):
    """A real Segmenter that answers with the true mask it is given, at a lower resolution."""

    name = "truth"
    device = torch.device("cpu")
    inference_size = 0

    def __init__(self, masks: dict[int, np.ndarray]) -> None:
        self.masks = masks

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return width // 2, height // 2

    def predict(self, frame: np.ndarray) -> np.ndarray:
        truth = self.masks[int(frame[0, 0, 0])].astype(np.float32)
        return cv2.resize(truth, self.input_size(frame.shape[1], frame.shape[0]))


def _processor(segmenter: Segmenter, options: MaskOptions) -> FrameProcessor:
    return FrameProcessor(segmenter, Compositor(BlurBackground()), options)


def test_eval_on_a_small_real_subset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Photos with exact masks; a segmenter that returns the truth scores (almost) perfectly."""
    source = fixture_path("photos")
    folder = tmp_path / "subset"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    masks = {}
    stems = sorted(path.stem for path in (source / "images").iterdir())[:3]
    for index, stem in enumerate(stems):
        frame = cv2.imread(str(source / "images" / f"{stem}.jpg"))
        frame[0, 0] = index  # tells the stand-in which photo it is looking at
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), frame)
        truth = cv2.imread(str(source / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), truth)
        masks[index] = truth > 127
    (folder / "stats.csv").write_text(f"id,prominent\n{stems[0]},1\n{stems[1]},0\n")
    plain = MaskOptions(refine=False)  # bilinear upsampling: the round trip is all that differs
    result = evaluate(_processor(_TruthSegmenter(masks), plain), folder)
    summary = result["summary"]
    assert summary["kind"] == "images" and summary["frames"] == 3
    assert 0.95 < summary["iou_mean"] <= 1.0 and summary["boundary_f"] > 0.95
    assert summary["mae"] < 0.02  # only the half-resolution round trip blurs the edge
    prominent = evaluate(_processor(_TruthSegmenter(masks), plain), folder, subset="prominent")
    assert prominent["summary"]["frames"] == 1


def test_eval_command_on_a_real_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_weights: Path
) -> None:
    folder = fixture_path("video")
    kind, samples = load_samples(folder)
    assert kind == "video" and len(samples) == 24 and samples[0].stem == "00000"
    out = tmp_path / "scores.json"
    code = main(["eval", "--model", "lraspp_mobilenet_v3_large", "--weights", str(fast_weights),
                 "--data", str(folder), "--inference-size", "32", "--json", str(out),
                 "--mask-smoothing", "0.5", "--feather", "1.5"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "24 video frames" in printed and "dtSSD" in printed
    scores = json.loads(out.read_text())
    assert len(scores["frames"]) == 24 and "dtssd" not in scores["frames"][0]
    assert all("dtssd" in row for row in scores["frames"][1:])
    # The mask options given are the ones used: run's flags, checked by run's code.
    options = scores["summary"]["options"]
    assert options["smoothing"] == 0.5 and options["feather"] == 1.5 and options["propagate"]


def test_eval_bad_data_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        load_samples(tmp_path / "missing")
    (tmp_path / "images").mkdir()
    with pytest.raises(SourceError, match="needs images/ and masks/"):
        load_samples(tmp_path)
    (tmp_path / "masks").mkdir()
    with pytest.raises(SourceError, match="no frame with a mask"):
        load_samples(tmp_path)
    with pytest.raises(SourceError, match="stats.csv"):
        load_samples(tmp_path, subset="prominent")


class _VideoTruthSegmenter(Segmenter):
    """A real Segmenter that knows the true mask of each frame of a video folder."""

    name = "truth"
    device = torch.device("cpu")
    inference_size = 0

    def __init__(self, folder: Path) -> None:
        self.masks = {}
        for sample in load_samples(folder)[1]:
            frame = cv2.imread(str(sample.frame))
            truth = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 127
            self.masks[frame.tobytes()] = truth.astype(np.float32)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return width // 2, height // 2

    def predict(self, frame: np.ndarray) -> np.ndarray:
        size = self.input_size(frame.shape[1], frame.shape[0])
        return cv2.resize(self.masks[frame.tobytes()], size, interpolation=cv2.INTER_AREA)


def test_replay_scores_what_a_viewer_sees_with_a_slow_model() -> None:
    folder = data_path("video_gt", "parkour")
    perfect = _VideoTruthSegmenter(folder)
    plain = MaskOptions(smoothing=0.0, hysteresis=0.0, propagate=False, refine=False)
    live = evaluate(_processor(perfect, plain), folder)["summary"]
    held = evaluate(_processor(perfect, plain), folder, replay_fps=24, latency_ms=300)
    moved = evaluate(
        _processor(perfect, MaskOptions(smoothing=0.0, hysteresis=0.0, refine=False)), folder,
        replay_fps=24, latency_ms=300,
    )  # fmt: skip
    rows = held["frames"]
    # The first mask is ready 300 ms (7.2 frames) in: frames 0-7 have none and frames 8-14 show
    # frame 0's mask; at 300 ms the model starts on the newest frame then, frame 7, and is done
    # at 600 ms (frame 14.4), so frame 15 shows frame 7's mask.
    assert held["summary"]["frames"] == 92 and rows[0]["id"] == "00008"
    assert rows[0]["mask_from"] == 0.0 and rows[6]["mask_from"] == 0.0
    assert rows[7]["id"] == "00015" and rows[7]["mask_from"] == pytest.approx(7 / 24)
    assert live["iou_mean"] > 0.95  # the truth, at half size, scored at once
    assert held["summary"]["iou_mean"] < 0.5 * live["iou_mean"]  # 300 ms behind a runner
    assert moved["summary"]["iou_mean"] > held["summary"]["iou_mean"] + 0.05  # flow catches up


def test_replay_schedules_the_model_as_the_live_pipeline_does() -> None:
    # A model faster than the camera (10 ms a mask, frames every 33 ms): as in vbg run, it runs
    # once on each frame and then waits for the next, so without sync each frame is shown with
    # the mask of the frame before (the one finished when it arrives), never an older one.
    folder = fixture_path("video")
    processor = _processor(
        _VideoTruthSegmenter(folder), MaskOptions(smoothing=0.0, hysteresis=0.0, refine=False)
    )
    result = evaluate(processor, folder, replay_fps=30, latency_ms=10, sync="off")
    rows = result["frames"]
    assert result["summary"]["masks"] == 24  # one run per frame, none twice on the same frame
    assert [row["id"] for row in rows] == [f"{i:05d}" for i in range(1, 24)]
    assert [row["mask_from"] for row in rows] == pytest.approx([i / 30 for i in range(23)])
    replay = result["summary"]["replay"]
    assert replay["sync"] == "off" and replay["frames_own_mask"] == replay["frames_held"] == 0


def _replay(folder: Path, latency_ms: float, sync: str, **options: Any) -> dict[str, Any]:
    processor = _processor(_VideoTruthSegmenter(folder), MaskOptions(**options))
    return evaluate(processor, folder, replay_fps=30, latency_ms=latency_ms, sync=sync)


def test_replay_with_sync_shows_each_frame_with_its_own_mask_when_the_model_keeps_up() -> None:
    # 10 ms a mask at 30 fps: auto holds each frame until its mask is done (10 ms), so what is
    # shown is what each frame's own mask gives, from the second frame on (auto does not hold
    # a frame before the model's first mask has told how fast it is).
    folder = fixture_path("video")
    synced = _replay(folder, 10, "auto")
    rows = synced["frames"]
    assert [row["id"] for row in rows] == [f"{i:05d}" for i in range(1, 24)]
    assert [row["mask_from"] for row in rows] == pytest.approx([i / 30 for i in range(1, 24)])
    replay = synced["summary"]["replay"]
    assert replay["frames_own_mask"] == replay["frames_held"] == 23
    assert replay["held_ms_max"] == pytest.approx(10.0)
    # The scores are those of each frame with its own mask, with the default mask filters too.
    no_lag = evaluate(_processor(_VideoTruthSegmenter(folder), MaskOptions()), folder)["frames"]
    filtered = _replay(folder, 10, "auto")["frames"]
    assert [row["iou"] for row in filtered] == pytest.approx([row["iou"] for row in no_lag[1:]])
    lagging = _replay(folder, 10, "off")["frames"]
    assert statistics.fmean(row["iou"] for row in lagging) < statistics.fmean(
        row["iou"] for row in filtered
    )


def test_replay_sync_auto_lets_go_when_the_model_falls_behind_and_on_holds_frames() -> None:
    folder = fixture_path("video")
    plain = {"smoothing": 0.0, "hysteresis": 0.0, "refine": False}
    # 30 ms a mask leaves too little of the 33 ms frame interval: auto shows the newest mask
    # (the frame before's) at once, as without sync; on holds each frame and gets its own.
    auto = _replay(folder, 30, "auto", **plain)
    assert auto["summary"]["replay"]["frames_held"] == 0
    assert [row["mask_from"] for row in auto["frames"]] == pytest.approx(
        [i / 30 for i in range(23)]
    )
    on = _replay(folder, 30, "on", **plain)
    assert on["summary"]["replay"]["frames_own_mask"] == on["summary"]["frames"] == 24
    # A model slower than the camera: on holds each frame one frame interval at most, and the
    # mask never comes in time; the frames go out with the newest finished mask.
    slow = _replay(folder, 45, "on", **plain)["summary"]["replay"]
    assert slow["frames_own_mask"] == 0
    assert slow["held_ms_max"] == pytest.approx(1000 / 30, abs=1e-3)


def test_replay_options_that_do_not_apply_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, video = str(fixture_path("photos")), str(fixture_path("video"))
    for argv, message in (
        (["--data", photos, "--replay-fps", "30"], "--replay-fps replays a video"),
        (["--data", video, "--latency-ms", "30"], "--latency-ms is the replayed model's time"),
    ):
        assert main(["eval", "--model", "lraspp_mobilenet_v3_large", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vbg: error:") and message in err and "\n" not in err


def _textured(width: int = 320, height: int = 180, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def test_flicker_counts_mask_changes_where_the_picture_is_still() -> None:
    frame = _textured()
    mask = np.zeros(frame.shape[:2], np.float32)
    mask[40:140, 100:220] = 1.0
    steady = FlickerMeter()
    for _ in range(5):
        steady.add(frame, mask)
    assert steady.mean == pytest.approx(0.0, abs=1e-6)  # same picture, same mask
    noisy = FlickerMeter()
    rng = np.random.default_rng(1)
    for _ in range(5):
        noisy.add(frame, np.clip(mask + rng.normal(0, 0.2, mask.shape), 0, 1).astype(np.float32))
    assert noisy.mean > 10.0  # the mask changes on its own where nothing moved


def test_flicker_follows_a_moving_picture() -> None:
    # The picture and the mask move 4 px to the right each frame: nothing flickers.
    base = _textured(400, 180)
    mask = np.zeros((180, 400), np.float32)
    mask[40:140, 120:220] = 1.0
    meter = FlickerMeter()
    for step in range(5):
        shift = 4 * step
        meter.add(np.ascontiguousarray(base[:, 40 - shift : 360 - shift]),
                  np.ascontiguousarray(mask[:, 40 - shift : 360 - shift]))  # fmt: skip
    assert meter.mean < 2.0


def test_flicker_ruler_stays_when_the_smoothings_flow_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The flicker figure is how vbg's smoothing is judged: the flow it measures with must not
    # change with the smoothing's flow (a cheaper preset there once moved the ruler as well).
    base = _textured(400, 180)
    mask = np.zeros((180, 400), np.float32)
    mask[40:140, 120:220] = 1.0

    def figure() -> float:
        rng = np.random.default_rng(2)
        meter = FlickerMeter()
        for step in range(6):
            shift = 3 * step
            wobble = np.clip(mask + rng.normal(0, 0.1, mask.shape), 0, 1).astype(np.float32)
            meter.add(np.ascontiguousarray(base[:, 40 - shift : 360 - shift]),
                      np.ascontiguousarray(wobble[:, 40 - shift : 360 - shift]))  # fmt: skip
        return meter.mean

    measured = figure()
    ultrafast = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
    monkeypatch.setattr(FlowPropagator.__init__, "__defaults__", (ultrafast,))
    assert figure() == measured


def test_eval_of_a_video_file_reports_its_flicker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_weights: Path
) -> None:
    clip = str(fixture_path("clip.mp4"))
    out = tmp_path / "flicker.json"
    argv = ["eval", "--model", "lraspp_mobilenet_v3_large", "--weights", str(fast_weights)]
    assert main([*argv, "--inference-size", "32", "--data", clip, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "75 video frames, no truth" in printed and "flicker" in printed
    summary = json.loads(out.read_text())["summary"]
    assert summary["kind"] == "clip" and summary["frames"] == 75 and summary["flicker"] >= 0.0
    assert main([*argv, "--data", clip, "--replay-fps", "30"]) == 2
    assert "need a data folder" in capsys.readouterr().err


def test_eval_takes_the_sync_flag(fast_weights: Path, tmp_path: Path) -> None:
    """``--sync off`` reaches the replay: no frame is held for its own mask."""
    folder = str(fixture_path("video"))
    held = {}
    for mode in ("on", "off"):
        out = tmp_path / f"{mode}.json"
        argv = ["eval", "--model", "lraspp_mobilenet_v3_large", "--weights", str(fast_weights),
                "--inference-size", "32", "--data", folder, "--replay-fps", "30",
                "--latency-ms", "10", "--sync", mode, "--json", str(out)]  # fmt: skip
        assert main(argv) == 0
        replay = json.loads(out.read_text())["summary"]["replay"]
        assert replay["sync"] == mode
        held[mode] = replay["frames_own_mask"]
    assert held["off"] == 0 < held["on"]
