"""The paced 720p pipeline with a stand-in for a model on a GPU, on any machine (issue 14, 7).

A GPU's model costs the CPU little: the thread waits for the device with Python's lock released.
The stand-in does the same: it sleeps ``--model-ms`` per mask (2.6 ms: mediapipe_selfie_landscape
on the H200) and returns a soft ellipse at that model's 256x144. Everything around it is vbg's
live path: the tracking crop, the smoothing's optical flow, the compositor, the blurred room, the
doctor clip as a paced 30 fps 1280x720 camera, still-scene skip off, 8 s. Each row runs in a fresh
process that imports vbg from its checkout (this one, and ``--before`` if given), in alternating
rounds; it prints fps out, masks/s, latency p95, CPU %, and the frames that had no mask of their
own (``masks_skipped``)::

    python benchmarks/gpu_standin.py [--before /tmp/before] [--rounds 2] [--model-ms 2.6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import parse_args, run_in_checkout

# Run in each checkout by common.run_in_checkout: argv = clip, seconds, model_ms.
_CHILD = """
import json, sys, time
clip, seconds, model_ms = sys.argv[1:4]
import cv2, numpy as np, torch
import vbg.commands.bench as bench
from vbg.segmentation.segmenter import Segmenter

class OnAGpu(Segmenter):
    name = "mediapipe_selfie_landscape"  # the crop and the filters as for that model
    device = torch.device("cpu")
    inference_size = 144

    def input_size(self, width, height):
        return (256, 144)

    def predict(self, frame):
        time.sleep(float(model_ms) / 1000.0)  # the device's time, Python's lock released
        mask = np.zeros((144, 256), np.float32)
        cv2.ellipse(mask, (128, 144), (50, 110), 0, 0, 360, 1.0, -1)
        return cv2.GaussianBlur(mask, (0, 0), 2)

bench.bench_segmenter = lambda name, device, precision="auto": (OnAGpu(), False)
row = bench.bench_pipeline(OnAGpu.name, clip, float(seconds), skip_still=False)
keys = ("fps_out", "mask_fps", "latency_ms", "cpu_percent", "masks_skipped", "frames_own_mask")
print(json.dumps({key: row[key] for key in keys}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout of vbg, run alike")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--model-ms", type=float, default=2.6)
    args, data = parse_args(parser)
    trees = {"now": Path(__file__).resolve().parents[1]}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    for number in range(args.rounds):
        for name, tree in trees.items():
            row = run_in_checkout(
                tree, _CHILD, str(data.clip), str(args.seconds), str(args.model_ms)
            )
            print(json.dumps({"round": number + 1, "code": name, **row}), flush=True)


if __name__ == "__main__":
    main()
