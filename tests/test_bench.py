"""vbg bench, and the pipeline figures it reads: frames and masks counted, still scenes, the
output rate.

No test here depends on how fast the machine is: each counts frames and masks, compares figures
with each other, or uses a stand-in model whose masks the test holds back. The inputs are a clip
of moving shapes and a picture made here; no test needs a real person.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vbg.commands.bench import (
    TimingSink,
    background_kinds,
    bench_compositor,
    format_bench,
    run_pipeline,
)
from vbg.commands.cli import main
from vbg.compositing.backgrounds import BlurBackground
from vbg.compositing.compositor import Compositor
from vbg.images import cover
from vbg.pipeline import Pipeline
from vbg.processor import FrameProcessor
from vbg.segmentation.segmenter import Segmenter
from vbg.sources.capture import ImageSource
from vbg.stats import Stats

SIZE = (320, 180)  # width, height of the clip and picture made here
MODEL = "lraspp_mobilenet_v3_large"  # the smallest torchvision model; untrained unless cached


def _scene(i: int) -> np.ndarray:
    """Frame ``i`` of a scene of moving shapes: H x W x 3 uint8 BGR at SIZE."""
    width, height = SIZE
    frame = np.full((height, width, 3), (90, 60, 30), np.uint8)
    cv2.rectangle(frame, (0, height * 2 // 3), (width, height), (40, 110, 60), -1)
    cv2.circle(frame, ((40 + 7 * i) % width, height // 2), 28, (220, 220, 230), -1)
    cv2.rectangle(frame, (width - 60, (10 + 5 * i) % height), (width - 20, 40 + (5 * i) % height),
                  (30, 30, 200), -1)  # fmt: skip
    return frame


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s clip of moving shapes (30 fps, mp4v), a still picture and a background picture."""
    folder = tmp_path_factory.mktemp("bench-inputs")
    clip = folder / "shapes.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, SIZE)
    for i in range(60):
        writer.write(_scene(i))
    writer.release()
    picture, background = folder / "still.png", folder / "background.png"
    cv2.imwrite(str(picture), _scene(0))
    cv2.imwrite(str(background), cv2.flip(_scene(20), 1))
    return {"clip": clip, "still": picture, "background": background}


class _StandInSegmenter(Segmenter):
    """A real segmenter without a network: a soft ellipse where a person would sit, at 64x36.

    Counts the masks it made in :attr:`calls`. With ``hold``, each mask waits until that event
    is set, like a slow model that is still busy when the output has ended.
    """

    name = "stand-in"
    device = torch.device("cpu")
    inference_size = 36

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.hold = hold
        self.calls = 0

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return 64, 36

    def predict(self, frame: np.ndarray) -> np.ndarray:
        if self.hold is not None:
            self.hold.wait(60.0)
        mask = np.zeros((36, 64), np.float32)
        cv2.ellipse(mask, (32, 36), (14, 26), 0, 0, 360, 1.0, -1)
        self.calls += 1
        return cv2.GaussianBlur(mask, (0, 0), 2)


def test_bench_command_writes_every_part(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = main([
        "bench", "--source", str(inputs["clip"]), "--still", str(inputs["still"]),
        "--background-image", str(inputs["background"]),
        "--background-video", str(inputs["clip"]),
        "--models", MODEL, "--seconds", "0.5", "--repeat", "1", "--startup-runs", "1",
        "--json", str(out),
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert printed.strip() == format_bench(result)  # the table shows the JSON's figures

    assert result["inputs"] == {
        "source": str(inputs["clip"]),
        "still": str(inputs["still"]),
        "background_image": str(inputs["background"]),
        "background_video": str(inputs["clip"]),
    }
    (model,) = result["models"]  # one row per model and device
    assert (model["model"], model["device"], model["input"]) == (MODEL, "cpu", "455x256")
    assert model["weights"] in {"real", "untrained"}
    assert {"ms_median", "ms_p95", "masks_per_s"} <= set(model)

    kinds = [(row["size"], row["background"]) for row in result["compositor"]]
    assert kinds == [
        (size, kind)
        for size in ("1280x720", "1920x1080")
        for kind in ("image", "video", "color", "blur", "none")
    ]
    for row in result["compositor"]:  # pass-through has nothing to blend
        assert ("numpy_float32_ms" in row) == (row["background"] != "none")

    moving, still = result["pipeline"]  # the clip, then the picture, as the camera
    assert (moving["scene"], moving["source"]) == ("moving", str(inputs["clip"]))
    assert (still["scene"], still["source"]) == ("still", str(inputs["still"]))
    for run in (moving, still):
        assert run["model"] == MODEL
        assert run["frames_out"] == 15  # 0.5 s at 30 fps, every output frame counted
        assert run["masks"] >= 0 and run["masks_skipped"] >= 0
        assert {"latency_ms", "mask_age_ms", "cpu_percent", "peak_rss_mb"} <= set(run)
        assert run["dropped"]["sink"] == 0  # a sink that only counts keeps up
        assert run["sync"] == "auto"  # as vbg run's default
        assert 0 <= run["frames_own_mask"] <= run["frames_out"]
        assert 0 <= run["frames_held"] <= run["frames_out"]

    (startup,) = result["startup"]  # vbg run's own start-up, from launch to the first frame out
    assert (startup["model"], startup["runs"], startup["weights"]) == (MODEL, 1, "untrained")
    assert startup["startup_s"] == startup["steps_s"]["first_frame_out"] > 0
    assert list(startup["steps_s"])[:3] == ["imported", "source_opened", "model_loaded"]


def test_without_background_files_the_compositor_part_uses_a_frame_of_the_source() -> None:
    frame = _scene(3)
    kinds = background_kinds(frame)
    assert list(kinds) == ["image", "color", "blur", "none"]  # no video without a file
    rendered = kinds["image"]().render(cover(frame, 640, 360), 0.0)
    assert rendered is not None and np.array_equal(rendered, cover(frame, 640, 360))
    rows = bench_compositor(frame, kinds, repeat=1)
    assert [(row["size"], row["background"]) for row in rows] == [
        (size, kind) for size in ("1280x720", "1920x1080") for kind in kinds
    ]


def test_bench_refuses_unknown_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--models", "unet"]) != 0
    assert "Unknown model 'unet'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--source", "does not exist"),
        ("--still", "Check --still"),
        ("--background-image", "Check --background-image"),
        ("--background-video", "Check --background-video"),
    ],
)
def test_a_missing_input_fails_before_anything_is_timed(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    message: str,
) -> None:
    argv = ["bench", "--source", str(inputs["clip"]), "--models", MODEL, flag, str(tmp_path / "x")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


@pytest.mark.parametrize("skip_still", [True, False])
def test_a_still_scene_reuses_the_mask(inputs: dict[str, Path], skip_still: bool) -> None:
    segmenter = _StandInSegmenter()
    with ImageSource(inputs["still"], fps=30.0) as source:
        figures = run_pipeline(source, segmenter, frames=45, skip_still=skip_still)
    assert figures["frames_out"] == 45
    assert figures["masks"] == segmenter.calls  # every mask the model made is counted
    if skip_still:  # an unchanging picture is segmented again once a second, the rest reused
        assert 1 <= figures["masks"] <= 2 + figures["duration_s"]
        assert figures["masks_skipped"] >= 10
    else:  # every frame the model got, it segmented
        assert figures.get("masks_skipped", 0) == 0 and figures["masks"] >= 10
    assert set(figures["timings"]["latency_sink"]) == {"p50_ms", "p95_ms"}
    assert set(figures["timings"]["mask_age"]) == {"p50_ms", "p95_ms"}


@pytest.mark.parametrize("sync", ["on", "off"])
def test_the_pipeline_part_holds_frames_as_sync_says(inputs: dict[str, Path], sync: str) -> None:
    segmenter = _StandInSegmenter()
    with ImageSource(inputs["still"], fps=30.0) as source:
        figures = run_pipeline(source, segmenter, frames=20, sync=sync)
    assert figures["frames_out"] == 20
    if sync == "on":  # every frame is held (within the bound) for its own mask
        assert figures["frames_held"] == 20 and set(figures["timings"]["sync_wait"]) == {
            "p50_ms", "p95_ms"
        }  # fmt: skip
    else:  # none is: each goes out with the newest mask
        assert figures.get("frames_held", 0) == 0 and "sync_wait" not in figures["timings"]


def _live_pipeline(
    source: ImageSource, segmenter: Segmenter, stats: Stats, frames: int
) -> Pipeline:
    """The pipeline as vbg bench runs it (blur background, a TimingSink), not yet started."""
    processor = FrameProcessor(segmenter, Compositor(BlurBackground()))
    return Pipeline(source, processor, [TimingSink()], max_frames=frames, stats=stats)


def test_the_output_rate_ends_with_the_output_not_with_the_models_last_mask(
    inputs: dict[str, Path],
) -> None:
    segmenter = _StandInSegmenter(hold=threading.Event())
    stats = Stats()
    with ImageSource(inputs["still"], fps=30.0) as source:
        pipeline = _live_pipeline(source, segmenter, stats, frames=15)
        pipeline.start()
        try:
            assert pipeline.wait(60.0)  # 15 frames out; the model is still on its first mask
            at_end = stats.to_dict()
            time.sleep(0.2)  # the model goes on after the output has ended
        finally:
            segmenter.hold.set()  # type: ignore[union-attr]
            pipeline.stop()  # waits for the model to finish the mask it is on
    figures = stats.to_dict()
    assert at_end["frames_out"] == figures["frames_out"] == 15
    assert at_end["masks"] == 0 and figures["masks"] == segmenter.calls <= 1
    # The run's time, and so its output rate, ended with the last frame out.
    assert figures["duration_s"] == at_end["duration_s"] > 0
    assert figures["fps_out"] == at_end["fps_out"]


def test_the_pipeline_part_runs_each_background_size_and_recording_asked_for(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    code = main([
        "bench", "--source", str(inputs["clip"]), "--models", MODEL, "--seconds", "0.5",
        "--repeat", "1", "--pipeline-backgrounds", "blur", str(inputs["background"]),
        "--pipeline-record", "--size", "640x360", "320x180", "--startup-runs", "0",
        "--json", str(out),
    ])  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())["pipeline"]
    variants = [("blur", False), (str(inputs["background"]), False), ("blur", True)]
    assert [(row["size"], row["background"], row["record"]) for row in rows] == [
        (size, *variant) for size in ("640x360", "320x180") for variant in variants
    ]
    for row in rows:
        assert row["frames_out"] == 15 and row["dropped"]["sink"] == 0


@pytest.mark.parametrize("size", ["1280", "12x720", "1281x720", "wide"])
def test_a_wrong_camera_size_is_refused(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--models", MODEL, "--size", size]) == 2
    err = capsys.readouterr().err.strip()
    assert "--size" in err and "\n" not in err, err
