"""Where a frame's CPU goes: each stage of vbg's frame path timed on one thread.

The test clip (a woman talking at a desk) is played as a 1280x720 camera through the frame path
``vbg run`` builds (:func:`vbg.commands.frame_path.make_processor`: the model, the blurred room,
the default mask filters), one frame after another, each with its own mask, and written to a
virtual camera that sends nowhere and to an H.264 recording (x264 ultrafast, as ``vbg run
--record``). OpenCV and torch run on one thread, so the figures are CPU time on one core,
whatever else the machine is doing. Prints the table (median and p95 CPU ms per frame for each
stage, and the total without the model) and writes it as JSON::

    python benchmarks/stage_profile.py [--data DIR] [--frames 300] [--model M] [--json F]
        [--no-record] [--before DIR --rounds 3]

With ``--before DIR`` (a checkout of an older commit, ``git worktree add /tmp/before HEAD``,
with this commit's vbg/commands/bench.py copied in if it has no ``profile_stages``) the profile
runs in ``--rounds`` alternating rounds of both trees, each in a process of its own, and the
table shows each stage's median over the rounds for both, and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import torch
from common import parse_args

from vbg.commands.bench import format_profile, profile_stages
from vbg.commands.frame_path import make_processor
from vbg.config import RunConfig
from vbg.sources.capture import VideoFileSource

WIDTH, HEIGHT, FPS = 1280, 720, 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=300, help="frames counted (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="frames not counted first")
    parser.add_argument("--model", default="mediapipe_selfie_landscape")
    parser.add_argument("--background", default="blur")
    parser.add_argument("--no-record", dest="record", action="store_false")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--before)")
    args, data = parse_args(parser)
    if args.before is not None:
        return compare(args)
    cv2.setNumThreads(1)
    config = RunConfig(source=str(data.clip), model=args.model, background=args.background)
    processor = make_processor(config, live=True)
    torch.set_num_threads(1)  # after make_processor: a live run on the CPU sets its own count
    source = VideoFileSource(
        data.clip, width=WIDTH, height=HEIGHT, fps=FPS, loop=True, realtime=False
    )
    with source, tempfile.TemporaryDirectory() as folder:
        profile = profile_stages(
            source,
            processor,
            frames=args.frames,
            warmup=args.warmup,
            record=Path(folder) / "out.mkv" if args.record else None,
        )
    processor.compositor.background.close()
    profile = {
        "model": args.model,
        "background": args.background,
        "config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
        **profile,
    }
    print(format_profile(profile))
    if args.json:
        args.json.write_text(json.dumps(profile, indent=2) + "\n")
    return 0


def compare(args: argparse.Namespace) -> int:
    """Alternating rounds of this tree and ``args.before``, each a process of its own."""
    trees = {"before": args.before.resolve(), "after": Path(__file__).resolve().parents[1]}
    passed = ["--data", str(args.data), "--frames", str(args.frames), "--warmup",
              str(args.warmup), "--model", args.model, "--background", args.background,
              *([] if args.record else ["--no-record"])]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "profile.json"
        for _ in range(args.rounds):
            for name, tree in trees.items():
                subprocess.run(
                    [sys.executable, __file__, *passed, "--json", str(out)],
                    check=True,
                    capture_output=True,
                    env={**os.environ, "PYTHONPATH": str(tree)},
                    cwd=tree,
                )
                runs[name].append(json.loads(out.read_text()))
    table: dict[str, dict[str, float]] = {}
    print(f"Stage profile, CPU ms per frame on one thread, median of {args.rounds} rounds "
          f"(each the median of its frames; load {os.getloadavg()[0]:.1f}):")  # fmt: skip
    print(f"  {'stage':<22} {'before':>8} {'after':>8} {'ratio':>6}")
    for stage in runs["after"][0]["stages_ms"]:
        row = {
            name: statistics.median(run["stages_ms"][stage]["median"] for run in runs[name])
            for name in trees
        }
        row["ratio"] = row["after"] / row["before"] if row["before"] else 0.0
        table[stage] = row
        print(f"  {stage:<22} {row['before']:>8.2f} {row['after']:>8.2f} {row['ratio']:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps({"stages_ms": table, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
