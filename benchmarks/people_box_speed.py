"""The tracking crop's look for the people in each mask (``people_box``: connected parts of the
mask and their boxes): OpenCV's default labelling (Spaghetti) against Grana's, which vbg uses.

The true masks of the test data's videos (every 5th frame of each folder under ``video_gt``),
scaled to the crop's 320x180 canvas and cut at 0.5 as ``people_box`` cuts them; CPU ms per mask
on one OpenCV thread, median of ``--rounds`` rounds in which the two take turns. Checks first
that both give the same parts and boxes on every mask::

    python benchmarks/people_box_speed.py [--data DIR] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from common import parse_args

CANVAS = (320, 180)
LABELLINGS = {"OpenCV's default (Spaghetti)": cv2.CCL_DEFAULT, "Grana (vbg)": cv2.CCL_GRANA}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args, data = parse_args(parser)
    cv2.setNumThreads(1)
    masks = []
    for folder in sorted((data.root / "video_gt").iterdir()):
        for path in sorted((folder / "masks").glob("*.png"))[::5]:
            truth = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if truth is None:
                raise SystemExit(f"cannot read {path}")
            small = cv2.resize(truth, CANVAS, interpolation=cv2.INTER_AREA)
            masks.append((small > 127).astype(np.uint8))
    for person in masks:
        default, grana = (
            cv2.connectedComponentsWithStatsWithAlgorithm(person, 8, cv2.CV_32S, labelling)[2]
            for labelling in LABELLINGS.values()
        )
        if not np.array_equal(default, grana):
            raise SystemExit("the two labellings found different parts")
    times: dict[str, list[float]] = {name: [] for name in LABELLINGS}
    for _ in range(args.rounds):
        for name, labelling in LABELLINGS.items():
            started = time.process_time()
            for person in masks:
                cv2.connectedComponentsWithStatsWithAlgorithm(person, 8, cv2.CV_32S, labelling)
            times[name].append(1000 * (time.process_time() - started) / len(masks))
    print(f"{len(masks)} masks at {CANVAS[0]}x{CANVAS[1]}, the same parts and boxes from both;"
          f" CPU ms per mask (median of {args.rounds} rounds):")  # fmt: skip
    for name, values in times.items():
        print(f"  {name:<30} {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
