"""Issue 14's live figures in one run: the paced 30 fps pipeline with mediapipe_selfie_landscape
(still-scene skip off, as ``vbg bench --no-skip-still``), this checkout against an older one.

Alternating rounds, each row a fresh process that imports vbg from its checkout (with this
environment's packages) and runs that checkout's ``bench_pipeline`` on the same clip:

- both checkouts: 1280x720, blurred room (the row issue 14 measured), from the clip and from a
  raw webcam stand-in (below);
- this checkout also: a picture background, the blurred room with an H.264 recording, 1920x1080
  with the blurred room, the blurred room with OpenCV's pool at 2 threads (a live run before
  this change) instead of 1, and the blurred room from an MJPEG webcam stand-in.

The webcam stand-in (webcam.WebcamStandIn) is what a 720p camera costs instead of the clip
(H.264 at 960x540, decoded and scaled up on every read): the clip's frames decoded and scaled
before the run, each read turned into BGR from a raw YUYV or an MJPEG frame as OpenCV's camera
backends do. The checkout's ``bench_pipeline`` opens it where it would open the clip.

Prints the median of each figure over the rounds, with its range::

    git worktree add /tmp/before ea3d7e8
    python benchmarks/half_cpu.py --before /tmp/before [--rounds 3] [--seconds 8] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from common import parse_args, run_in_checkout

MODEL = "mediapipe_selfie_landscape"

# Run in each checkout by common.run_in_checkout: argv = the job (JSON).
_CHILD = """
import json, sys
from pathlib import Path
job = json.loads(sys.argv[1])
import vbg.commands.frame_path as frame_path
if job.pop("opencv_threads", None):
    frame_path.OPENCV_THREADS = 2
import vbg.commands.bench as bench
webcam = job.pop("webcam", None)
if webcam:  # the checkout's bench opens the stand-in where it would open the clip
    sys.path.insert(0, job.pop("benchmarks"))
    from webcam import WebcamStandIn
    stand_in = WebcamStandIn(Path(job["clip"]), fourcc=webcam, frames=round(30 * job["seconds"]))
    bench.open_source = lambda *args, **kwargs: stand_in
row = bench.bench_pipeline(
    job.pop("model"), job.pop("clip"), job.pop("seconds"), skip_still=False, **job
)
print(json.dumps(row))
"""


def _row(root: Path, job: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = run_in_checkout(root, _CHILD, json.dumps(job))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)
    here = Path(__file__).resolve().parents[1]
    base = {"model": MODEL, "clip": str(data.clip), "seconds": args.seconds}
    webcam = {"benchmarks": str(Path(__file__).resolve().parent)}
    rows = {
        "before: 1280x720 blur": (args.before, base),
        "before: 1280x720 blur, YUYV webcam": (args.before, {**base, **webcam, "webcam": "YUYV"}),
        "now: 1280x720 blur": (here, base),
        "now: 1280x720 picture": (here, {**base, "background": str(data.background_image)}),
        "now: 1280x720 blur + recording": (here, {**base, "record": True}),
        "now: 1920x1080 blur": (here, {**base, "size": [1920, 1080]}),
        "now: 1280x720 blur, OpenCV 2 threads": (here, {**base, "opencv_threads": 2}),
        "now: 1280x720 blur, YUYV webcam": (here, {**base, **webcam, "webcam": "YUYV"}),
        "now: 1280x720 blur, MJPEG webcam": (here, {**base, **webcam, "webcam": "MJPG"}),
    }
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in rows}
    for number in range(args.rounds):
        for label, (root, job) in rows.items():
            runs[label].append(_row(root, dict(job)))
            print(json.dumps({"round": number + 1, "row": label, **runs[label][-1]}), flush=True)
    print(f"{MODEL}, {args.seconds:g} s per row, median (range) of {args.rounds} rounds:")
    table: dict[str, dict[str, float]] = {}
    for label, found in runs.items():
        figures = {
            "fps_out": [r["fps_out"] for r in found],
            "mask_fps": [r["mask_fps"] for r in found],
            "latency_p95_ms": [r["latency_ms"].get("p95_ms", 0.0) for r in found],
            "cpu_percent": [r["cpu_percent"] for r in found],
        }
        table[label] = {key: statistics.median(values) for key, values in figures.items()}
        shown = "  ".join(
            f"{key} {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
            for key, v in figures.items()
        )
        print(f"  {label:<38} {shown}")
    if args.json:
        args.json.write_text(json.dumps({"medians": table, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
