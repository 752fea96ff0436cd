"""vbg bench, and the pipeline figures it reads: latency, mask age, CPU, memory, still scenes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, data_path
from vbg.backgrounds import BlurBackground
from vbg.bench import TimingSink
from vbg.cli import main
from vbg.compositor import Compositor
from vbg.pipeline import Pipeline
from vbg.segmenter import Segmenter, load_segmenter
from vbg.sources import ImageSource
from vbg.stats import Stats


@pytest.mark.parametrize("skip_still", [True, False])
def test_a_still_scene_reuses_the_mask(fcn_weights: Path, skip_still: bool) -> None:
    still = data_path("images", "volcomix_doctor-5871743_640.jpg")
    segmenter = load_segmenter("fcn_resnet50", weights=fcn_weights, device="cpu", inference_size=48)
    sink, stats = TimingSink(), Stats()
    pipeline = Pipeline(
        ImageSource(still, fps=30.0), segmenter, Compositor(BlurBackground()), [sink],
        max_frames=45, stats=stats, skip_still=skip_still,
    )  # fmt: skip
    pipeline.start()
    assert pipeline.wait(60.0)
    pipeline.stop()
    figures = stats.to_dict()
    assert sink.frames == 45
    if skip_still:  # 1.5 s of an unchanging picture: segmented once a second, the rest reused
        assert figures["masks"] <= 3 and figures["masks_skipped"] >= 10
    else:
        assert figures["masks"] >= 5 and "masks_skipped" not in figures
    latency = figures["timings"]["latency_sink"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"]
    assert figures["timings"]["mask_age"]["p95_ms"] >= 0
    assert figures["cpu_percent"] > 0 and figures["peak_rss_mb"] > 100


def test_bench_command_writes_every_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_path("videos", "volcomix_doctor-26732.mp4")
    out = tmp_path / "bench.json"
    code = main(["bench", "--data", str(DATA), "--models", "lraspp_mobilenet_v3_large",
                 "--seconds", "1", "--repeat", "2", "--json", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Models" in printed and "Compositor" in printed and "Pipeline" in printed
    result = json.loads(out.read_text())
    (model,) = result["models"]
    assert model["model"] == "lraspp_mobilenet_v3_large" and model["ms_median"] > 0
    kinds = {(row["size"], row["background"]) for row in result["compositor"]}
    for size in ("1280x720", "1920x1080"):
        assert {(size, k) for k in ("image", "video", "color", "blur", "none")} <= kinds
    assert all("numpy_float32_ms" in r for r in result["compositor"] if r["background"] != "none")
    (run,) = result["pipeline"]
    assert run["fps_out"] > 0 and run["latency_ms"]["p95_ms"] > 0
    assert {"cpu_percent", "peak_rss_mb", "mask_age_ms", "dropped"} <= set(run)


def test_bench_refuses_unknown_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--models", "unet"]) != 0
    assert "Unknown model 'unet'" in capsys.readouterr().err


class _SlowSegmenter(Segmenter):
    """A real segmenter that takes 3 s per mask, like a big model on a slow CPU."""

    def __init__(self, inner: Segmenter) -> None:
        self.inner, self.name, self.device = inner, inner.name, inner.device
        self.inference_size = inner.inference_size

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return self.inner.input_size(width, height)

    def predict(self, frame: np.ndarray) -> np.ndarray:
        time.sleep(3.0)
        return self.inner.predict(frame)


def test_output_rate_ends_with_the_output_not_with_the_models_last_mask(
    fcn_weights: Path,
) -> None:
    still = data_path("images", "volcomix_doctor-5871743_640.jpg")
    inner = load_segmenter("fcn_resnet50", weights=fcn_weights, device="cpu", inference_size=48)
    stats = Stats()
    pipeline = Pipeline(ImageSource(still, fps=30.0), _SlowSegmenter(inner),
                        Compositor(BlurBackground()), [TimingSink()], max_frames=15,
                        stats=stats, skip_still=False)  # fmt: skip
    started = time.monotonic()
    pipeline.start()
    assert pipeline.wait(30.0)
    pipeline.stop()  # waits for the model to finish the mask it is on
    assert time.monotonic() - started > 2.5
    figures = stats.to_dict()
    assert figures["frames_out"] == 15
    assert figures["duration_s"] < 1.8  # half a second of frames, not the model's 3 s
