"""Start-up: from launch to the first composited frame, ``vbg run`` on the test clip.

Runs ``python -m vbg --source CLIP --no-preview --no-virtual-cam --record F --max-frames 1
--overwrite --stats S`` (with ``--model M``; ``fcn_resnet50`` with an untrained state dict as
``--weights``, made here: the speed is the same) N times and reports the medians of what the
run's stats say (``startup``: seconds since launch, and ``startup_cpu``: the process's CPU
seconds, at each milestone), split into: Python and imports (torch, cv2, av; the flags read),
the source opened, the model loaded (traced and frozen), the first mask, the first frame out
(``startup_s``; a model slower than the run of one frame gives it no mask: ``-``).
With ``--before DIR`` (a checkout of an older commit, ``git worktree add /tmp/before HEAD``)
its code runs too, in alternating rounds, timed from outside: launch to exit (wall and the
child's CPU), as the old code writes no milestones::

    python benchmarks/startup.py [--data DIR] [--runs 5] [--models M ...] [--before DIR]
        [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, parse_args

STEPS = ("imported", "source_opened", "model_loaded", "first_mask", "first_frame_out")


def untrained_weights(folder: Path) -> Path:
    """An untrained fcn_resnet50 state dict (21 labels) in ``folder``."""
    import torch

    from vbg.commands.bench import untrained_model

    path = folder / "fcn_resnet50_untrained.pth"
    torch.save(untrained_model("fcn_resnet50").state_dict(), path)
    return path


def launch(tree: Path, argv: list[str], stats: Path | None) -> dict[str, Any]:
    """One run of ``python -m vbg argv`` in ``tree``: its stats' milestones (when ``stats``),
    and launch to exit (wall seconds, the child's CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "vbg", *argv, *(["--stats", str(stats)] if stats else [])],
        cwd=tree,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result: dict[str, Any] = {"exit_s": wall, "exit_cpu_s": cpu}
    if stats is not None:
        figures = json.loads(stats.read_text())
        result["startup"] = figures["startup"]
        result["startup_cpu"] = figures["startup_cpu"]
    return result


def median(runs: list[dict[str, Any]], key: str, step: str | None = None) -> float | None:
    """The median of ``key`` (``key``'s ``step``) over the runs that reached it; None if none
    did (a run of one frame may end before a slow model's first mask)."""
    values = [run[key] if step is None else run[key].get(step) for run in runs]
    reached = [value for value in values if value is not None]
    return round(statistics.median(reached), 3) if reached else None


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument(
        "--models", nargs="+", default=["mediapipe_selfie_landscape", "fcn_resnet50"]
    )
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args, data = parse_args(parser)
    result: dict[str, Any] = {"load": os.getloadavg(), "models": {}}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        weights = untrained_weights(folder) if "fcn_resnet50" in args.models else None
        for model in args.models:
            argv = ["--source", str(data.clip), "--no-preview", "--no-virtual-cam",
                    "--record", str(folder / "out.mkv"), "--max-frames", "1", "--overwrite",
                    "--model", model]  # fmt: skip
            if model == "fcn_resnet50":
                argv += ["--weights", str(weights)]
            now: list[dict[str, Any]] = []
            old: list[dict[str, Any]] = []
            for _ in range(args.runs):  # alternating rounds: the load changes alike for both
                now.append(launch(ROOT, argv, folder / "stats.json"))
                if args.before is not None:
                    old.append(launch(args.before, argv, None))
            row: dict[str, Any] = {
                "runs": args.runs,
                "since_launch_s": {step: median(now, "startup", step) for step in STEPS},
                "cpu_s": {step: median(now, "startup_cpu", step) for step in STEPS},
                "exit_s": median(now, "exit_s"),
                "exit_cpu_s": median(now, "exit_cpu_s"),
            }
            if old:
                row["before"] = {
                    "exit_s": median(old, "exit_s"),
                    "exit_cpu_s": median(old, "exit_cpu_s"),
                }
            result["models"][model] = row
            print(f"{model} (median of {args.runs} runs; load {os.getloadavg()[0]:.1f}):")
            print(f"  {'milestone':<18} {'since launch s':>15} {'CPU s':>8}")
            for step in STEPS:
                print(f"  {step:<18} {shown(row['since_launch_s'][step]):>15} "
                      f"{shown(row['cpu_s'][step]):>8}")  # fmt: skip
            print(f"  launch to exit: {shown(row['exit_s'])} s, CPU {shown(row['exit_cpu_s'])} s")
            if old:
                before = row["before"]
                print(f"  before ({args.before}): launch to exit {shown(before['exit_s'])} s, "
                      f"CPU {shown(before['exit_cpu_s'])} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
