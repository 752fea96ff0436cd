"""The live pipeline of two checkouts of vbg side by side: alternating rounds, each a fresh
process that imports vbg from its own checkout (with this environment's packages), each running
its own ``bench_pipeline`` on the same clip (paced 30 fps 1280x720 camera, blurred room). For a
change that may move the pipeline's speed, such as the one-frame-path change:

    git worktree add /tmp/before faceaf8
    python benchmarks/pipeline_ab.py /tmp/before . [--model M] [--seconds 10] [--rounds 3]

Prints each round as JSON, then medians (with the range) per checkout and still-scene setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import parse_args, run_in_checkout

# Run in each checkout by common.run_in_checkout: argv = model, clip, seconds, skip.
_CHILD = """
import json, sys
model, clip, seconds, skip = sys.argv[1:5]
from pathlib import Path
try:
    from vbg.commands.bench import bench_pipeline
    row = bench_pipeline(model, clip, float(seconds), skip_still=skip == "1")
except ImportError:  # a checkout from before vbg/commands (its bench took the clip as a Path)
    from vbg.bench import bench_pipeline
    row = bench_pipeline(model, Path(clip), float(seconds), skip_still=skip == "1")
keys = ("fps_out", "mask_fps", "latency_ms", "mask_age_ms", "cpu_percent", "peak_rss_mb")
print(json.dumps({key: row[key] for key in keys}))
"""


def _round(root: Path, model: str, clip: Path, seconds: float, skip: bool) -> dict:
    row: dict = run_in_checkout(root, _CHILD, model, str(clip), str(seconds), "1" if skip else "0")
    return row


def _median(rows: list[dict], pick: object) -> str:
    values = [pick(row) for row in rows]  # type: ignore[operator]
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", type=Path, help="checkout of vbg before the change")
    parser.add_argument("after", type=Path, help="checkout of vbg after the change")
    parser.add_argument("--model", default="mediapipe_selfie_landscape")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args, data = parse_args(parser)
    rows: dict[tuple[str, bool], list[dict]] = {}
    for number in range(1, args.rounds + 1):
        for name, root in (("before", args.before), ("after", args.after)):
            for skip in (False, True):
                row = _round(root, args.model, data.clip, args.seconds, skip)
                rows.setdefault((name, skip), []).append(row)
                print(json.dumps({"round": number, "code": name, "skip_still": skip, **row}))
    print(f"{args.model}, {args.seconds:g} s, {args.rounds} rounds: median (range)")
    for (name, skip), found in rows.items():
        print(
            f"  {name:<6} skip {'on ' if skip else 'off'}  out "
            f"{_median(found, lambda r: r['fps_out'])} fps  masks "
            f"{_median(found, lambda r: r['mask_fps'])}/s  latency p95 "
            f"{_median(found, lambda r: r['latency_ms']['p95_ms'])} ms  mask age p95 "
            f"{_median(found, lambda r: r['mask_age_ms']['p95_ms'])} ms  CPU "
            f"{_median(found, lambda r: r['cpu_percent'])} %"
        )


if __name__ == "__main__":
    main()
