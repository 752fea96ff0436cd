"""CPU time of the smoothing's optical flow (DIS) per mask, vbg's preset against the cheaper ones
that were tried for issue 14 (and not kept: they cost dtSSD and IoU, or flicker, see the
README), vbg's preset on greys shrunk to 256 wide, without its spatial propagation or its mean
normalization, and started from the last flow (none kept either); and vbg's preset on two
greys of one flat grey, what DIS costs at this size whatever the picture holds (its floor).

Consecutive frames of the doctor clip as 320x180 grey images (the tracking crop's mask size,
which the smoothing's flow runs at), one OpenCV thread, CPU ms per flow, median of ``--rounds``
rounds in which the variants take turns (a variant that starts from the last flow is given
the flow of the pair before it, as the smoothing would keep it)::

    python benchmarks/dis_presets.py [--data DIR] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from common import parse_args

from vbg.images import grey

SIZE = (320, 180)
# name: (preset, settings changed on it)
VARIANTS: dict[str, tuple[int, dict[str, int]]] = {
    "medium (vbg)": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {}),
    "medium, finest scale 2": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"FinestScale": 2}),
    "medium, a patch every 4 px": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"PatchStride": 4}),
    "medium, 3 refinement iterations": (
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        {"VariationalRefinementIterations": 3},
    ),
    "medium, 2 refinement iterations": (
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        {"VariationalRefinementIterations": 2},
    ),
    "medium, no refinement": (
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        {"VariationalRefinementIterations": 0},
    ),
    "fast": (cv2.DISOPTICAL_FLOW_PRESET_FAST, {}),
    "fast, finest scale 1, no refinement": (
        cv2.DISOPTICAL_FLOW_PRESET_FAST,
        {"FinestScale": 1, "VariationalRefinementIterations": 0},
    ),
    "ultrafast": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, {}),
    "ultrafast, finest scale 1, no refinement": (
        cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        {"FinestScale": 1, "VariationalRefinementIterations": 0},
    ),
    # The greys first shrunk to 256 wide (the model's width; the two resizes are timed too).
    "medium at 256x144": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"Width": 256}),
    "medium, no spatial propagation": (
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        {"UseSpatialPropagation": 0},
    ),
    "medium, no mean normalization": (
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        {"UseMeanNormalization": 0},
    ),
    # The flow of the pair before given as the first guess (DIS takes an input flow of the
    # greys' size as its start), with medium's 25 gradient-descent iterations and with 12.
    "medium, the last flow as first guess": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"Warm": 1}),
    "medium, last flow as first guess, 12 iterations": (
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        {"Warm": 1, "GradientDescentIterations": 12},
    ),
    # Both greys one flat grey: no texture anywhere, so every patch's search stops at once;
    # what is left is DIS's work per pixel (pyramids, densification, refinement). The two
    # fills are timed too (well under 0.1 ms).
    "medium on a flat picture (DIS's floor)": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"Flat": 1}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args, data = parse_args(parser)
    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(str(data.clip))
    greys: list[np.ndarray] = []
    while len(greys) < 10:
        ok, frame = capture.read()
        if not ok:
            break
        greys.append(grey(frame, *SIZE))
    capture.release()
    flows = {}
    widths = {}
    warm = set()
    flat = set()
    for name, (preset, settings) in VARIANTS.items():
        flows[name] = cv2.DISOpticalFlow.create(preset)
        for setting, value in settings.items():
            if setting == "Width":
                widths[name] = (value, round(SIZE[1] * value / SIZE[0]))
            elif setting == "Warm":
                warm.add(name)
            elif setting == "Flat":
                flat.add(name)
            else:
                getattr(flows[name], f"set{setting}")(value)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, flow in flows.items():
            started = time.process_time()
            last: np.ndarray | None = None
            for now, then in zip(greys[1:], greys[:-1], strict=True):
                if name in widths:
                    now = cv2.resize(now, widths[name], interpolation=cv2.INTER_AREA)
                    then = cv2.resize(then, widths[name], interpolation=cv2.INTER_AREA)
                if name in flat:
                    now, then = np.full_like(now, 128), np.full_like(then, 128)
                guess = last.copy() if name in warm and last is not None else None
                last = flow.calc(now, then, guess)  # type: ignore[call-overload,arg-type]
            times[name].append(1000 * (time.process_time() - started) / (len(greys) - 1))
    print(f"DIS optical flow at {SIZE[0]}x{SIZE[1]}, CPU ms per flow (median of {args.rounds}):")
    for name, values in times.items():
        print(f"  {name:<48} {statistics.median(values):6.2f}")


if __name__ == "__main__":
    main()
