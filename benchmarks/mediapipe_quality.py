"""Mask quality of vbg's MediaPipe models vs MediaPipe's own runtime on the same data.

Both sides segment every photo (or video frame) on its own, without vbg's mask filters, and are
scored with the same measures as ``vbg eval`` (vbg/commands/evaluate.py). MediaPipe lives in a
virtual environment of its own (see benchmarks/common.py):

    python benchmarks/mediapipe_quality.py --mediapipe-python /tmp/mpenv/bin/python [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import cv2
from common import MEDIAPIPE_SELECTION, evaluate_with, mediapipe_masks, parse_args

from vbg.commands.evaluate import boundary_f, iou, load_samples, mae
from vbg.mask_filters import MaskOptions
from vbg.segmentation.segmenter import load_segmenter

# MediaPipe's own path: no temporal filters, plain bilinear upsampling of the mask.
AS_MEDIAPIPE = MaskOptions(smoothing=0.0, hysteresis=0.0, propagate=False, refine=False)


def mediapipe_scores(python: str, model: str, folder: Path, subset: str | None) -> dict[str, Any]:
    _, samples = load_samples(folder, subset)
    masks = mediapipe_masks(python, model, [sample.frame for sample in samples])
    rows = []
    for soft, sample in zip(masks, samples, strict=True):
        truth = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 127
        rows.append((iou(soft > 0.5, truth), boundary_f(soft > 0.5, truth), mae(soft, truth)))
    return {
        "iou_mean": statistics.fmean(r[0] for r in rows),
        "boundary_f": statistics.fmean(r[1] for r in rows),
        "mae": statistics.fmean(r[2] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mediapipe-python", required=True, help="python of the mediapipe venv")
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)
    sets = ((data.coco, None), (data.coco, "prominent"), (data.parkour, None))
    results = []
    print(f"{'model':<28} {'data':<34} {'IoU vbg':>8} {'IoU MP':>8} {'diff':>7} "
          f"{'F vbg':>7} {'F MP':>7}")  # fmt: skip
    for name in MEDIAPIPE_SELECTION:
        segmenter = load_segmenter(name, weights=None, device="cpu")
        for folder, subset in sets:
            ours = evaluate_with(segmenter, AS_MEDIAPIPE, folder, subset=subset)["summary"]
            theirs = mediapipe_scores(args.mediapipe_python, name, folder, subset)
            label = folder.name + (f" ({subset})" if subset else "")
            diff = ours["iou_mean"] - theirs["iou_mean"]
            print(
                f"{name:<28} {label:<34} {ours['iou_mean']:>8.4f} {theirs['iou_mean']:>8.4f} "
                f"{diff:>+7.4f} {ours['boundary_f']:>7.4f} {theirs['boundary_f']:>7.4f}"
            )
            results.append({"model": name, "data": label, "vbg": ours, "mediapipe": theirs})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
