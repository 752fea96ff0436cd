"""A/B of the model's torch threads in the live pipeline on 2 cores: 1 (vbg's share_cores) vs 2.

Alternating rounds of vbg bench's pipeline part (paced 30 fps 1280x720 camera from a real clip,
blur background), medians over the rounds:

    python benchmarks/threads_ab.py [--rounds 3] [--seconds 8] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import parse_args

import vbg.commands.bench

MODELS = ("mediapipe_selfie", "fcn_resnet50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args, data = parse_args(parser)
    rows: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.rounds):
        for threads in (1, 2):

            def fixed(count: int = threads) -> int:
                torch.set_num_threads(count)
                return count

            vbg.commands.bench.share_cores = fixed  # type: ignore[assignment]
            for model in MODELS:
                result = vbg.commands.bench.bench_pipeline(model, str(data.clip), args.seconds)
                rows.setdefault((threads, model), []).append(result)
    print(f"{'threads':>7} {'model':<20} {'fps out':>8} {'masks/s':>8} {'latency p95 ms':>15}")
    for (threads, model), results in sorted(rows.items()):
        fps = statistics.median(r["fps_out"] for r in results)
        masks = statistics.median(r["mask_fps"] for r in results)
        p95 = statistics.median(r["latency_ms"].get("p95_ms", 0.0) for r in results)
        print(f"{threads:>7} {model:<20} {fps:>8.2f} {masks:>8.2f} {p95:>15.1f}")


if __name__ == "__main__":
    main()
