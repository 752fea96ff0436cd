"""Mask quality of vbg's MediaPipe models vs MediaPipe's own runtime on the same data.

Both sides segment every photo (or video frame) on its own, without vbg's mask filters, and are
scored with the same measures as ``vbg eval`` (vbg/evaluate.py). MediaPipe lives in a virtual
environment of its own (see benchmarks/mediapipe_speed.py):

    python benchmarks/mediapipe_quality.py --mediapipe-python /tmp/mpenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from vbg.evaluate import boundary_f, evaluate, iou, load_samples, mae
from vbg.refine import MaskOptions
from vbg.segmenter import load_segmenter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = (
    ("images_gt/coco128_person", None),
    ("images_gt/coco128_person", "prominent"),
    ("video_gt/parkour", None),
)
MODELS = {0: "mediapipe_selfie", 1: "mediapipe_selfie_landscape"}
# MediaPipe's own path: no temporal filters, plain bilinear upsampling of the mask.
AS_MEDIAPIPE = MaskOptions(smoothing=0.0, hysteresis=0.0, propagate=False, refine=False)

MEDIAPIPE_SIDE = r"""
import sys
from pathlib import Path
import cv2, numpy as np, mediapipe as mp
selection, out = int(sys.argv[1]), Path(sys.argv[2])
for i, path in enumerate(sys.argv[3:]):
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as seg:
        mask = seg.process(rgb).segmentation_mask
    cv2.imwrite(str(out / f"{i:05d}.png"), np.round(np.clip(mask, 0, 1) * 65535).astype(np.uint16))
"""


def mediapipe_scores(python: str, selection: int, folder: Path, subset: str | None) -> dict:
    _, samples = load_samples(folder, subset)
    with tempfile.TemporaryDirectory() as out:
        command = [python, "-c", MEDIAPIPE_SIDE, str(selection), out]
        subprocess.run([*command, *(str(s.frame) for s in samples)], check=True,
                       capture_output=True)  # fmt: skip
        rows = []
        for i, sample in enumerate(samples):
            soft = cv2.imread(f"{out}/{i:05d}.png", cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535
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
    args = parser.parse_args()
    results = []
    print(f"{'model':<28} {'data':<34} {'IoU vbg':>8} {'IoU MP':>8} {'diff':>7} "
          f"{'F vbg':>7} {'F MP':>7}")  # fmt: skip
    for selection, name in MODELS.items():
        segmenter = load_segmenter(name, weights=None, device="cpu")
        for relative, subset in SETS:
            folder = DATA / relative
            ours = evaluate(segmenter, folder, subset=subset, options=AS_MEDIAPIPE)["summary"]
            theirs = mediapipe_scores(args.mediapipe_python, selection, folder, subset)
            label = relative.split("/")[-1] + (f" ({subset})" if subset else "")
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
