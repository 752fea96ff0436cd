"""Soak test (not part of the test suite): 20,000 frames from a video file at full speed through
every stage (capture, model, mask filters, compositor, recording; the capture waits until the
recording has written the last frame, so every frame read is composited and recorded) and checks
that nothing grows:

- the thread count and the sink queues stay bounded;
- resident memory grows by less than 5 % after warm-up (the first 1,000 frames);
- the compositor skips no frame read;
- the recording holds every frame the compositor made (decoded again and counted).

    python benchmarks/soak.py [--frames 20000] [--model mediapipe_selfie_landscape] [--json F]
        [--data DIR]

Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
from common import live_pipeline, parse_args, rss_mb

from vbg.commands.bench import bench_segmenter
from vbg.images import Frame
from vbg.outputs.sinks import RecordingSink, Sink
from vbg.sources.capture import Source, VideoFileSource
from vbg.stats import Stats

WARM_UP = 1000  # frames before the memory baseline


class LockstepSource(Source):
    """``inner``, read one frame at a time: the next frame only once :class:`LockstepSink` has
    written the last one (as a file is processed, not as a camera: no frame is skipped). After
    :attr:`ended` is set, a read that would wait returns None (the end), so the run stops."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps
        self.description = inner.description
        self.turn = threading.Semaphore(1)
        self.ended = threading.Event()

    def read(self) -> Frame | None:
        while not self.turn.acquire(timeout=0.1):
            if self.ended.is_set():
                return None
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


class LockstepSink(Sink):
    """``inner``, handing the source its turn after each frame written."""

    def __init__(self, inner: Sink, source: LockstepSource) -> None:
        super().__init__()
        self.inner, self.source = inner, source
        self.name = inner.name

    def _write(self, frame: Frame) -> None:
        self.inner.write(frame)
        self.source.turn.release()

    def _close(self) -> None:
        self.inner.close()


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.grab():
        frames += 1
    capture.release()
    return frames


def soak(clip: Path, frames: int, model: str, width: int, height: int) -> dict[str, Any]:
    segmenter, real = bench_segmenter(model, "cpu")
    source = LockstepSource(
        VideoFileSource(clip, width=width, height=height, loop=True, realtime=False)
    )
    stats = Stats()
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "soak.mkv"
        recording = LockstepSink(RecordingSink(path, width, height, source.fps), source)
        pipeline = live_pipeline(source, segmenter, [recording], frames=frames, stats=stats)
        started = time.monotonic()
        pipeline.start()
        while not pipeline.wait(2.0):
            queues = pipeline.queue_lengths()
            samples.append({"s": time.monotonic() - started, "frames": stats.get("frames_out"),
                            "rss_mb": rss_mb(), "threads": threading.active_count(),
                            "queue": max(queues.values(), default=0)})  # fmt: skip
            if len(samples) % 15 == 1:
                print(f"{samples[-1]['s']:6.0f} s  {samples[-1]['frames']:6d} frames  RSS "
                      f"{samples[-1]['rss_mb']:7.1f} MiB  threads {samples[-1]['threads']}  "
                      f"record queue {samples[-1]['queue']}", flush=True)  # fmt: skip
        source.ended.set()
        pipeline.stop()
        source.close()
        seconds = time.monotonic() - started
        recorded = count_frames(path)
    figures = stats.to_dict()
    warm = [s for s in samples if s["frames"] >= WARM_UP] or samples
    base = warm[0]["rss_mb"]
    result = {
        "model": model, "weights": "real" if real else "untrained", "size": f"{width}x{height}",
        "frames_out": figures["frames_out"], "seconds": round(seconds, 1),
        "fps_out": round(figures["frames_out"] / seconds, 1), "masks": figures["masks"],
        "frames_skipped": figures.get("frames_skipped", 0),
        "rss_after_warm_up_mb": round(base, 1),
        "rss_end_mb": round(samples[-1]["rss_mb"], 1),
        "rss_max_after_warm_up_mb": round(max(s["rss_mb"] for s in warm), 1),
        "threads_max": max(s["threads"] for s in samples),
        "threads_min": min(s["threads"] for s in samples),
        "record_queue_max": max(s["queue"] for s in samples),
        "record_queue_limit": max(2, round(2.0 * source.fps)),
        "record_dropped": figures["dropped"].get("record", 0),
        "record_written": stats.get("record_frames"),
        "recording_decoded_frames": recorded,
    }  # fmt: skip
    growth = (result["rss_max_after_warm_up_mb"] - base) / base
    result["rss_growth_percent"] = round(100 * growth, 2)
    result["checks"] = {
        "threads bounded": result["threads_max"] == result["threads_min"],
        "record queue bounded": result["record_queue_max"] <= result["record_queue_limit"],
        "memory grows < 5 %": growth < 0.05,
        "no frame skipped": result["frames_skipped"] == 0,
        "recording has every frame": recorded == figures["frames_out"] == result["record_written"],
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--model", default="mediapipe_selfie_landscape")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)
    result = soak(data.clip, args.frames, args.model, args.width, args.height)
    for key, value in result.items():
        if key != "checks":
            print(f"{key:<28} {value}")
    for check, ok in result["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'}  {check}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
