"""What a recording costs: ms per 1280x720 frame for OpenCV's MPEG-4 Part 2 writer (what vbg
recorded with before) and for vbg's H.264 writer (PyAV, libx264) at several x264 presets, with
a fixed thread count, on frames of the webcam-like doctor clip; with the file size and the
quality (PSNR of the decoded file against the frames written).

    python benchmarks/video_writer.py [--frames 150] [--threads 1 2] [--presets ...] [--data DIR]

Frames are decoded and scaled first, so only the writer is timed: wall time per frame, and the
process's CPU time per frame (every thread of the encoder counted), each the median of
``--rounds`` rounds. The H.264 rows include the BGR -> yuv420p conversion vbg does per frame.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
from common import parse_args

from vbg.images import cover
from vbg.outputs.video import CRF, VideoWriter
from vbg.sources.video_file import VideoFileReader

SIZE = (1280, 720)
FPS = 30.0


def load_frames(clip: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``clip`` at 1280x720 (scaled to cover), as vbg run's camera
    would give them."""
    frames = []
    with VideoFileReader(clip) as reader:
        while len(frames) < count and (frame := reader.read()) is not None:
            frames.append(cover(frame, *SIZE))
    return frames


def psnr(path: Path, frames: list[np.ndarray]) -> float:
    """Mean PSNR (dB, over B, G and R) of the decoded file against the frames written."""
    scores = []
    with VideoFileReader(path) as reader:
        for frame in frames:
            decoded = reader.read()
            if decoded is None:
                raise RuntimeError(f"{path} has fewer frames than were written")
            scores.append(cv2.PSNR(frame, decoded))
    return float(np.mean(scores))


def time_writer(
    write_all: Callable[[Path], None], path: Path, frames: int, rounds: int
) -> tuple[float, float]:
    """(wall ms per frame, CPU ms per frame), medians over ``rounds``."""
    wall, cpu = [], []
    for _ in range(rounds):
        path.unlink(missing_ok=True)
        started, started_cpu = time.perf_counter(), time.process_time()
        write_all(path)
        wall.append((time.perf_counter() - started) * 1000 / frames)
        cpu.append((time.process_time() - started_cpu) * 1000 / frames)
    return statistics.median(wall), statistics.median(cpu)


def opencv_mp4v(frames: list[np.ndarray]) -> Callable[[Path], None]:
    """OpenCV's own FFmpeg writer, as vbg recorded before (its thread count is OpenCV's)."""

    def write_all(path: Path) -> None:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
        for frame in frames:
            writer.write(frame)
        writer.release()

    return write_all


def x264(frames: list[np.ndarray], preset: str, threads: int) -> Callable[[Path], None]:
    def write_all(path: Path) -> None:
        with closing(VideoWriter(path, *SIZE, rate=FPS, preset=preset, threads=threads)) as writer:
            for frame in frames:
                writer.write(frame)

    return write_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--presets", nargs="+", default=["ultrafast", "superfast", "veryfast", "faster"]
    )
    args, data = parse_args(parser)
    frames = load_frames(data.clip, args.frames)
    seconds = len(frames) / FPS
    print(f"{len(frames)} frames {SIZE[0]}x{SIZE[1]} of {data.clip.name}, x264 at CRF {CRF}")
    print("| writer | threads | wall ms/frame | CPU ms/frame | Mbit/s | PSNR dB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for threads in args.threads:
            cases = [("OpenCV mp4v (before)", opencv_mp4v(frames))]
            cases += [(f"H.264 {p}", x264(frames, p, threads)) for p in args.presets]
            for name, write_all in cases:
                path = Path(folder) / "out.mkv"
                wall, cpu = time_writer(write_all, path, len(frames), args.rounds)
                rate = path.stat().st_size * 8 / seconds / 1e6
                quality = psnr(path, frames)
                print(
                    f"| {name} | {threads} | {wall:.1f} | {cpu:.1f} | {rate:.2f} | {quality:.2f} |"
                )


if __name__ == "__main__":
    main()
