"""Memory over a long live run: resident memory sampled every 10 s, printed at 1 minute and at
the end, with the peak. The pipeline runs as ``vbg bench`` runs it (paced 30 fps 1280x720 camera
from a real clip, looping), plus a recording to a temporary file.

    python benchmarks/memory.py [--minutes 5] [--model mediapipe_selfie_landscape]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from vbg.backgrounds import BlurBackground
from vbg.bench import TimingSink, bench_segmenter
from vbg.compositor import Compositor
from vbg.pipeline import Pipeline
from vbg.sinks import RecordingSink
from vbg.sources import VideoFileSource
from vbg.stats import Stats, peak_rss_mb

CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", default="mediapipe_selfie_landscape")
    args = parser.parse_args()
    segmenter, _ = bench_segmenter(args.model, "cpu")
    source = VideoFileSource(
        CLIP / "volcomix_doctor-26732.mp4", width=1280, height=720, fps=30.0, loop=True
    )
    stats = Stats()
    with tempfile.TemporaryDirectory() as folder:
        recording = RecordingSink(Path(folder) / "memory.mp4", 1280, 720, 30.0)
        pipeline = Pipeline(
            source, segmenter, Compositor(BlurBackground()), [TimingSink(), recording],
            max_frames=round(args.minutes * 60 * 30), stats=stats,
        )  # fmt: skip
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
