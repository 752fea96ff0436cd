"""Where the live pipeline's CPU goes, by thread: issue 14's row (``mediapipe_selfie_landscape``,
the doctor clip as a paced 1280x720 camera at 30 fps, blurred room, still-scene skip off) run as
``vbg bench`` runs it, with each thread's CPU time read from Linux's /proc/self/task before and
after the measured span (the first ``--warmup`` seconds, start-up included, are left out).

Threads are named as vbg names them (capture, inference, compositor, the sink), FFmpeg's
decoder threads as FFmpeg does (``av:h264:df0``); the rest of the process is one line. Each
figure is a share of one core over the span. Linux only::

    python benchmarks/thread_cpu.py [--data DIR] [--seconds 14] [--warmup 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

from common import parse_args

from vbg.commands.bench import bench_pipeline

MODEL = "mediapipe_selfie_landscape"
TASKS = Path("/proc/self/task")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of this process so far, by its id, with the name the kernel
    has for it."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for task in TASKS.iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def one_round(clip: Path, seconds: float, warmup: float) -> dict[str, float]:
    """A share of one core for each thread, from ``warmup`` seconds after the start to the last
    look at the threads while the compositor's thread was still there (looked at every 0.1 s:
    a thread that has ended is no longer in /proc)."""
    names: dict[int, str] = {}  # kernel thread id -> vbg's thread name
    looks: list[tuple[float, dict[int, tuple[str, float]]]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id})
            looks.append((time.monotonic(), thread_cpu()))
            done.wait(0.1)

    watcher = threading.Thread(target=watch, name="watch")
    watcher.start()
    try:
        bench_pipeline(MODEL, str(clip), seconds, skip_still=False)
    finally:
        done.set()
        watcher.join()
    began, before = next(look for look in looks if look[0] - looks[0][0] >= warmup)
    ended, after = [look for look in looks if "vbg-compositor" in _named(look[1], names)][-1]
    span = ended - began
    shares: dict[str, float] = {}
    for tid, (kernel_name, cpu) in after.items():
        name = names.get(tid, kernel_name)
        if name in ("MainThread", "watch") or name == kernel_name == "python":
            name = "rest of the process"
        spent = cpu - before.get(tid, (kernel_name, 0.0))[1]
        shares[name] = shares.get(name, 0.0) + 100.0 * spent / span
    shares["whole process"] = sum(shares.values())
    return shares


def _named(threads: dict[int, tuple[str, float]], names: dict[int, str]) -> set[str]:
    return {names.get(tid, kernel_name) for tid, (kernel_name, _) in threads.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=14.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser)
    rounds = [one_round(data.clip, args.seconds, args.warmup) for _ in range(args.rounds)]
    print(f"{MODEL}, 1280x720 at 30 fps, blurred room, % of one core by thread, median (range)"
          f" of {args.rounds} rounds:")  # fmt: skip
    medians = {}
    for name in sorted({n for r in rounds for n in r}, key=lambda n: -rounds[0].get(n, 0.0)):
        values = [r.get(name, 0.0) for r in rounds]
        medians[name] = statistics.median(values)
        shown = f"{medians[name]:5.1f} ({min(values):.1f}-{max(values):.1f})"
        print(f"  {name:<24} {shown}")
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "rounds": rounds}, indent=1) + "\n")


if __name__ == "__main__":
    main()
