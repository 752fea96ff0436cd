"""Start-up milestones in a run's stats, and the per-stage profile ``vbg bench`` writes.

Counting, never timing: each figure exists, is positive where it must be, comes in the order
the run reaches it, and the profile counts the frames it was asked for. How fast any of it is
lives in benchmarks/startup.py and benchmarks/stage_profile.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import StandInCamera, StandInSegmenter, fixture_path
from vbg.commands.bench import STAGES, live_processor, profile_stages
from vbg.commands.run import run
from vbg.config import RunConfig
from vbg.sources.capture import VideoFileSource
from vbg.stats import Stats, since_launch

MILESTONES = ["imported", "source_opened", "model_loaded", "first_frame_out"]


def test_a_run_writes_its_startup_to_the_stats(
    tmp_path: Path, fast_weights: Path, stand_in_camera: type[StandInCamera]
) -> None:
    config = RunConfig(
        source=str(fixture_path("clip.mp4")),
        model="lraspp_mobilenet_v3_large",
        weights=fast_weights,
        inference_size=32,
        device="cpu",
        preview=False,
        record=tmp_path / "out.mkv",
        max_frames=3,
        stats=tmp_path / "stats.json",
    )
    run(config, camera_factory=stand_in_camera)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_out"] == 3
    assert stats["startup_s"] > 0
    assert stats["startup_s"] == stats["startup"]["first_frame_out"]
    for marks in (stats["startup"], stats["startup_cpu"]):
        assert set(MILESTONES) <= set(marks)
        at = [marks[name] for name in MILESTONES]
        assert at == sorted(at) and at[0] > 0  # reached in this order, after the launch
    if stats["masks"]:
        assert stats["startup"]["first_mask"] >= stats["startup"]["model_loaded"]


def test_stats_without_a_frame_out_have_no_startup() -> None:
    stats = Stats()
    stats.count("masks")
    figures = stats.to_dict()
    assert "startup_s" not in figures and "startup" not in figures
    stats.count("frames_out")
    stats.count("frames_out")  # the first one only is a milestone
    assert stats.to_dict()["startup_s"] > 0
    assert set(stats.to_dict()["startup"]) == {"first_mask", "first_frame_out"}
    assert since_launch() > 0


def test_the_profile_counts_every_stage_of_every_frame(tmp_path: Path) -> None:
    source = VideoFileSource(fixture_path("clip.mp4"), loop=True, realtime=False)
    with source:
        profile = profile_stages(
            source,
            live_processor(StandInSegmenter(), skip_still=False),
            frames=12,
            warmup=3,
            record=tmp_path / "profile.mkv",
        )
    assert profile["frames"] == 12 and profile["size"] == "320x180" and profile["record"]
    assert list(profile["stages_ms"]) == [*STAGES, "total_without_model"]
    for row in profile["stages_ms"].values():
        assert set(row) == {"median", "p95"}
    assert (tmp_path / "profile.mkv").stat().st_size > 0
