"""What dtSSD the parkour clip gives masks that are almost right (issue: flicker, lag, edges).

dtSSD (Robust Video Matting's temporal-consistency error, vbg/commands/evaluate.py) compares
each frame's change of the mask with the change of the true mask. On a fast runner, an error that
moves with the person shows up as temporal error too. This scores the true masks themselves,
altered in three small ways, to show where the floor lies for any model's masks on this clip:

- softened edges (Gaussian blur, sigma 2 px);
- a consistent 2 px spill around the person (dilation by a 5 x 5 square);
- one frame late (what a mask one camera frame old would score).

    python benchmarks/dtssd_floor.py [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import cv2
import numpy as np
from common import parse_args

from vbg.commands.evaluate import dtssd, load_samples


def score(truths: list[np.ndarray], alter: Callable[[int], np.ndarray]) -> float:
    """Mean dtSSD of the masks alter(i) against the true masks."""
    masks = [alter(i) for i in range(len(truths))]
    return statistics.fmean(
        dtssd(masks[i], masks[i - 1], truths[i] > 0.5, truths[i - 1] > 0.5)
        for i in range(1, len(truths))
    )


def main() -> None:
    _, data = parse_args(argparse.ArgumentParser(description=__doc__))
    truths = [
        (cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 127).astype(np.float32)
        for sample in load_samples(data.parkour)[1]
    ]
    square = np.ones((5, 5), np.uint8)
    cases = {
        "true masks, edges softened (sigma 2 px)": lambda i: cv2.GaussianBlur(
            truths[i], (0, 0), 2.0
        ),
        "true masks, 2 px spill around the person": lambda i: cv2.dilate(truths[i], square),
        "true masks, one frame late": lambda i: truths[max(0, i - 1)],
    }
    for label, alter in cases.items():
        print(f"{label:<44} dtSSD {score(truths, alter):.2f}")


if __name__ == "__main__":
    main()
