"""Before/after figures for vbg's mask filters (issue: flicker, lag, edges, halo).

Runs ``vbg eval``'s scoring (vbg/commands/evaluate.py) with the filters off and on, on the test
data (benchmarks/common.py), with the MediaPipe models (their real weights: vbg models fetch):

1. temporal consistency on parkour: raw per-frame masks vs vbg's smoothing (dtSSD, IoU);
2. lag on parkour replayed as a 24 fps camera with a 300 ms (and 100 ms) model: the mask held
   until the next result vs moved along the optical flow (IoU of what a viewer sees);
3. edges: bilinear vs guided upsampling (boundary F) on coco128_person prominent and parkour;
4. halo: colour difference just outside the person between the blurred output and a blur of the
   true room alone, plain Gaussian blur of the whole frame vs vbg's mask-weighted blur; and on
   a green background, its glow and spill (benchmarks/halo.py, which also does pictures).

    python benchmarks/mask_quality.py [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import Data, evaluate_with, parse_args
from halo import GREEN, band, masks
from halo import measure as measure_halo

from vbg.commands.evaluate import iou, load_samples
from vbg.compositing.backgrounds import BlurBackground
from vbg.mask_filters import MaskOptions
from vbg.segmentation.segmenter import Segmenter, load_segmenter

RAW = MaskOptions(smoothing=0.0, hysteresis=0.0, propagate=False, refine=False)
VBG = MaskOptions()


def _row(label: str, summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("iou_mean", "boundary_f", "mae", "dtssd", "frames")
    row = {"case": label, **{k: summary[k] for k in keys if k in summary}}
    shown = "  ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in row.items()
        if k != "case"
    )
    print(f"  {label:<44} {shown}", flush=True)
    return row


def blur_halo(segmenter: Segmenter, coco: Path) -> dict[str, float]:
    """Mean colour difference (mean over B, G, R) in the band 1-15 px outside the true person
    (halo.py's band) between the blurred output, with vbg's mask, and a blur of the true room
    alone, for a plain Gaussian blur of the whole frame and for vbg's mask-weighted blur."""
    plain_d, weighted_d = [], []
    for _, frame, truth, mask in masks(segmenter, VBG, coco, "prominent"):
        room = (~truth).astype(np.float32)
        spread = cv2.GaussianBlur(frame.astype(np.float32) * room[..., None], (0, 0), 21)
        reference = spread / np.maximum(cv2.GaussianBlur(room, (0, 0), 21), 1e-6)[..., None]
        where = band(truth)
        if where.sum() == 0:
            continue
        for weighted, out in ((False, plain_d), (True, weighted_d)):
            blurred = BlurBackground(weighted=weighted).render(frame, 0.0, mask)
            assert blurred is not None
            out.append(float(np.abs(blurred[where].astype(float) - reference[where]).mean()))
    return {"plain_blur": statistics.fmean(plain_d), "mask_weighted": statistics.fmean(weighted_d)}


def _centre(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]) if len(xs) else np.zeros(2)


def moved_bound(
    segmenter: Segmenter, parkour: Path, frames: list[dict[str, Any]], fps: float
) -> float:
    """Mean IoU of the model's mask of each shown frame's keyframe, shifted by the true
    displacement of the person's centre from the keyframe to the shown frame."""
    samples = {sample.stem: sample for sample in load_samples(parkour)[1]}
    order = list(samples)
    ious = []
    for row in frames:
        then = samples[order[round(row["mask_from"] * fps)]]
        now = samples[row["id"]]
        truth_then = cv2.imread(str(then.mask), cv2.IMREAD_GRAYSCALE) > 127
        truth_now = cv2.imread(str(now.mask), cv2.IMREAD_GRAYSCALE) > 127
        dx, dy = _centre(truth_now) - _centre(truth_then)
        mask = segmenter.segment(cv2.imread(str(then.frame)))
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(mask, shift, mask.shape[::-1]) > 0.5
        ious.append(iou(moved, truth_now))
    return statistics.fmean(ious)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--models", nargs="*", default=["mediapipe_selfie_landscape", "mediapipe_selfie"]
    )
    args, data = parse_args(parser)
    results = {model: measure(model, data) for model in args.models}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def measure(model: str, data: Data) -> dict[str, Any]:
    """All four parts for one model, printed as they come."""
    parkour, coco = data.parkour, data.coco
    segmenter = load_segmenter(model, weights=None, device="cpu")
    print(model)
    rows = [
        _row("parkour raw per-frame masks", evaluate_with(segmenter, RAW, parkour)["summary"]),
        _row("parkour vbg filters", evaluate_with(segmenter, VBG, parkour)["summary"]),
    ]
    for latency in (300, 100):
        replay = {"replay_fps": 24.0, "latency_ms": float(latency)}
        for label, options in (("held", MaskOptions(propagate=False)), ("propagated", VBG)):
            result = evaluate_with(segmenter, options, parkour, **replay)
            rows.append(_row(f"parkour 24 fps, {latency} ms model, {label}", result["summary"]))
        bound = moved_bound(segmenter, parkour, result["frames"], 24.0)
        print(f"  {latency} ms: the mask shifted by the true displacement: IoU {bound:.4f}")
        rows.append({"case": f"parkour 24 fps, {latency} ms model, true shift", "iou_mean": bound})
    bilinear = MaskOptions(refine=False)
    for folder, subset in ((coco, "prominent"), (parkour, None)):
        name = folder.name + (f" ({subset})" if subset else "")
        for label, options in (("bilinear", bilinear), ("guided", VBG)):
            summary = evaluate_with(segmenter, options, folder, subset=subset)["summary"]
            rows.append(_row(f"{name} edges {label}", summary))
    figures = blur_halo(segmenter, coco)
    print(f"  blur halo (coco128_person prominent): plain blur {figures['plain_blur']:.2f}, "
          f"mask-weighted {figures['mask_weighted']:.2f}")  # fmt: skip
    glow = measure_halo(segmenter, VBG, coco, [GREEN], "prominent")[GREEN]
    print(f"  halo on green (coco128_person prominent): glow {glow['glow']:.2f}, "
          f"spill {glow['spill']:.2f} (python benchmarks/halo.py for more)")  # fmt: skip
    return {"rows": rows, "halo": figures, "halo_green": glow}


if __name__ == "__main__":
    main()
