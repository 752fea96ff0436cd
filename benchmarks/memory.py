"""Memory over a long live run: resident memory sampled every 10 s, printed at 1 minute and at
the end, with the peak. The pipeline runs as ``vbg bench`` runs it (paced 30 fps 1280x720 camera
from a real clip, looping), plus a recording to a temporary file.

    python benchmarks/memory.py [--minutes 5] [--model mediapipe_selfie_landscape] [--data DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from common import live_pipeline, parse_args, rss_mb

from vbg.commands.bench import TimingSink, bench_segmenter
from vbg.outputs.sinks import RecordingSink
from vbg.sources.capture import VideoFileSource
from vbg.stats import Stats, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", default="mediapipe_selfie_landscape")
    args, data = parse_args(parser)
    segmenter, _ = bench_segmenter(args.model, "cpu")
    source = VideoFileSource(data.clip, width=1280, height=720, fps=30.0, loop=True)
    stats = Stats()
    with tempfile.TemporaryDirectory() as folder:
        recording = RecordingSink(Path(folder) / "memory.mp4", 1280, 720, 30.0)
        pipeline = live_pipeline(source, segmenter, [TimingSink(), recording],
                                 frames=round(args.minutes * 60 * 30), stats=stats)  # fmt: skip
        samples: list[tuple[float, float]] = []
        pipeline.start()
        started = time.monotonic()
        while not pipeline.wait(10.0):
            samples.append((time.monotonic() - started, rss_mb()))
            print(f"{samples[-1][0]:6.0f} s  RSS {samples[-1][1]:7.1f} MiB  "
                  f"threads {threading.active_count()}", flush=True)  # fmt: skip
        pipeline.stop()
        source.close()
    at_minute = next((mb for t, mb in samples if t >= 60), samples[0][1])
    figures = stats.to_dict()
    print(f"RSS at 1 min {at_minute:.1f} MiB, at the end {samples[-1][1]:.1f} MiB "
          f"({samples[-1][1] - at_minute:+.1f} MiB), peak {peak_rss_mb():.1f} MiB; "
          f"{figures['frames_out']} frames out at {figures['fps_out']} fps, "
          f"{figures['masks']} masks")  # fmt: skip


if __name__ == "__main__":
    main()
