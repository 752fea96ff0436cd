"""Float32 against float16 (and contiguous against channels-last) for every model on a GPU.

For each model: milliseconds per mask of ``Segmenter.predict`` on one 1280x720 frame (predict
returns a NumPy mask, so each call waits for the GPU): the variants take turns for ``--rounds``
rounds of ``--repeat`` calls each, and the median of the rounds' medians is reported, so that a
slow spell of the machine hits every variant alike. Also
how far the float16 masks are from the float32 ones on a real photo (largest difference, and the
IoU of the two masks at 0.5). The torchvision models run with untrained weights where their
pretrained ones are not cached (the speed is the same; their masks are then noise, so only the
MediaPipe rows' agreement says much).

    python benchmarks/cuda_precision.py [--data DIR] [--device cuda] [--rounds 7] [--repeat 30]
        [--channels-last] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import parse_args

from vbg.commands.bench import untrained_model
from vbg.images import cover
from vbg.segmentation.models import MODELS, is_cached
from vbg.segmentation.segmenter import (
    Segmenter,
    TorchvisionSegmenter,
    build_model,
    choose_device,
    load_segmenter,
)

VARIANTS = {  # label: (half, channels_last) for the torchvision models
    "float32": (False, False),
    "float32 channels-last": (False, True),
    "float16": (True, False),
    "float16 channels-last": (True, True),
}


def _torchvision(name: str, device: torch.device, half: bool, channels_last: bool) -> Segmenter:
    info = MODELS[name]
    torch.manual_seed(0)  # the same untrained weights for every variant
    model = build_model(name) if is_cached(info) else untrained_model(name)
    return TorchvisionSegmenter(model, device=device, inference_size=info.inference_size,
                                name=name, half=half, channels_last=channels_last)  # fmt: skip


def _ms(segmenter: Segmenter, frame: np.ndarray, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        segmenter.predict(frame)
        times.append(1000.0 * (time.perf_counter() - started))
    return statistics.median(times)


def _alternating(variants: dict[str, Segmenter], frame: np.ndarray, rounds: int,
                 repeat: int) -> dict[str, float]:  # fmt: skip
    for segmenter in variants.values():  # warm-up: allocations, cuDNN's choice of kernels
        for _ in range(5):
            segmenter.predict(frame)
    medians: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, segmenter in variants.items():
            medians[label].append(_ms(segmenter, frame, repeat))
    return {label: statistics.median(values) for label, values in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--channels-last", action="store_true", help="also the channels-last ones")
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)
    device = choose_device(args.device)
    photo = cv2.imread(str(data.still))
    frame = cover(photo, 1280, 720)
    rows = []
    for name, info in MODELS.items():
        variants: dict[str, Segmenter]
        if info.family == "mediapipe":
            variants = {
                precision: load_segmenter(name, weights=None, device=args.device,
                                          precision=precision)
                for precision in ("float32", "float16")
            }  # fmt: skip
        else:
            variants = {label: _torchvision(name, device, *flags)
                        for label, flags in VARIANTS.items()
                        if args.channels_last or not flags[1]}  # fmt: skip
        reference = variants["float32"].predict(frame)
        times = _alternating(variants, frame, args.rounds, args.repeat)
        for label, segmenter in variants.items():
            mask = segmenter.predict(frame)
            both = (mask > 0.5) & (reference > 0.5)
            either = (mask > 0.5) | (reference > 0.5)
            agree = float(both.sum() / either.sum()) if either.any() else 1.0  # both empty: same
            row = {
                "model": name, "variant": label, "ms": round(times[label], 3),
                "max_diff": round(float(np.abs(mask - reference).max()), 5),
                "iou_vs_float32": round(agree, 5),
            }  # fmt: skip
            rows.append(row)
            print(f"{name:<30} {label:<22} {row['ms']:8.2f} ms  max diff {row['max_diff']:.5f}  "
                  f"IoU vs float32 {row['iou_vs_float32']:.4f}", flush=True)  # fmt: skip
        del variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        name = torch.cuda.get_device_name() if device.type == "cuda" else device.type
        result = {"device": name, "torch": torch.__version__, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
