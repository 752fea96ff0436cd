"""Stats: counters and per-stage timings of a run, safe to update from every thread."""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

SAMPLES_KEPT = 20_000
_IMPORTED = time.monotonic()  # the fallback clock's zero where the process start is unknown
# The first of these counts is a start-up milestone (Stats.mark): the first mask, the first
# frame out (``startup_s``).
FIRST_OF = {"masks": "first_mask", "frames_out": "first_frame_out"}


def since_launch() -> float:
    """Seconds since this process started, interpreter start-up included: on Linux from
    /proc (the process's start in clock ticks since boot against the uptime, 10 ms steps);
    elsewhere since vbg's stats module was imported (the interpreter's start and the first
    imports not counted)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the command name
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB; 0.0 where the platform does not say.

    Linux and macOS: ``getrusage``'s ``ru_maxrss`` (the ``resource`` module, Unix only, so it is
    imported here and not at the top: vbg must import on Windows). Windows: the peak working set
    (``GetProcessMemoryInfo``, through ctypes: no extra dependency). 0.0 means "not known" (a
    platform with neither, or the call failed); a real figure is never 0 for a running Python.
    """
    if sys.platform == "win32":
        return _peak_working_set_mb()
    try:
        import resource
    except ImportError:  # neither Unix nor Windows (WASI, Emscripten)
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _peak_working_set_mb() -> float:
    """Windows: the process's peak working set in MiB (0.0 if the call fails)."""
    if sys.platform != "win32":  # for mypy on other platforms; only peak_rss_mb calls this
        return 0.0
    import ctypes
    from ctypes import wintypes

    class ProcessMemoryCounters(ctypes.Structure):  # PROCESS_MEMORY_COUNTERS, psapi.h
        _fields_ = [
            ("cb", wintypes.DWORD),
            ("PageFaultCount", wintypes.DWORD),
            ("PeakWorkingSetSize", ctypes.c_size_t),
            ("WorkingSetSize", ctypes.c_size_t),
            ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
            ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
            ("PagefileUsage", ctypes.c_size_t),
            ("PeakPagefileUsage", ctypes.c_size_t),
        ]

    counters = ProcessMemoryCounters()
    counters.cb = ctypes.sizeof(counters)
    try:
        kernel32 = ctypes.WinDLL("kernel32")
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        get_info = kernel32.K32GetProcessMemoryInfo  # kernel32 since Windows 7
        get_info.argtypes = [wintypes.HANDLE, ctypes.POINTER(ProcessMemoryCounters), wintypes.DWORD]
        get_info.restype = wintypes.BOOL
        if not get_info(kernel32.GetCurrentProcess(), ctypes.byref(counters), counters.cb):
            return 0.0
    except (OSError, AttributeError):  # an unusual Windows without the call
        return 0.0
    return round(counters.PeakWorkingSetSize / (1024 * 1024), 1)


class Stats:
    """Counts (frames in and out, masks, ...) and mean milliseconds per stage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._time_sum: dict[str, float] = {}
        self._time_n: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._samples: dict[str, collections.deque[float]] = {}
        self._started = 0.0
        self._stopped = 0.0
        self._cpu_started = 0.0
        self._cpu_stopped = 0.0
        self._marks: dict[str, float] = {}  # start-up milestones: seconds since launch
        self._cpu_marks: dict[str, float] = {}  # and the process's CPU seconds by then
        self.info: dict[str, Any] = {}  # model, device, sizes: written as they are

    def start(self) -> None:
        self._started = time.monotonic()
        self._cpu_started = time.process_time()

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = time.monotonic()
            self._cpu_stopped = time.process_time()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n
        if name in FIRST_OF and FIRST_OF[name] not in self._marks:
            self.mark(FIRST_OF[name])

    def mark(self, milestone: str) -> None:
        """Note the seconds since launch (:func:`since_launch`) and the process's CPU seconds
        at which ``milestone`` was reached, the first time only: the run's start-up,
        ``startup`` and ``startup_cpu`` in :meth:`to_dict` (``startup_s``: the first frame
        out)."""
        if milestone not in self._marks:
            at, cpu = since_launch(), time.process_time()
            with self._lock:
                self._marks.setdefault(milestone, round(at, 3))
                self._cpu_marks.setdefault(milestone, round(cpu, 3))

    def set_count(self, name: str, n: int) -> None:
        """Set counter ``name`` to ``n`` (a figure known only at the end: the frames a
        recording's file really holds)."""
        with self._lock:
            self._counts[name] = n

    def add_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._time_sum[stage] = self._time_sum.get(stage, 0.0) + seconds
            self._time_n[stage] = self._time_n.get(stage, 0) + 1

    def add_sample(self, name: str, seconds: float) -> None:
        """Keep a timing (the newest 20,000 of each name) for its percentiles."""
        with self._lock:
            if name not in self._samples:
                self._samples[name] = collections.deque(maxlen=SAMPLES_KEPT)
            self._samples[name].append(seconds)

    def percentiles(self, name: str) -> dict[str, float]:
        """p50 and p95 of a sampled timing, in milliseconds ({} before any sample)."""
        with self._lock:
            values = sorted(self._samples.get(name, ()))
        if not values:
            return {}

        def pick(q: float) -> float:
            return round(1000.0 * values[min(len(values) - 1, int(q * len(values)))], 2)

        return {"p50_ms": pick(0.50), "p95_ms": pick(0.95)}

    def set_dropped(self, queue: str, n: int) -> None:
        with self._lock:
            self._dropped[queue] = n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def rate(self, name: str) -> float:
        """Events per second of counter ``name`` since start."""
        elapsed = (self._stopped or time.monotonic()) - self._started
        return self.get(name) / elapsed if self._started and elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The figures written by ``--stats``: counts, rates, per-stage mean ms, drops."""
        elapsed = (self._stopped or time.monotonic()) - self._started if self._started else 0.0
        with self._lock:
            counts = dict(self._counts)
            stage_ms = {
                stage: round(1000.0 * total / self._time_n[stage], 3)
                for stage, total in sorted(self._time_sum.items())
            }
            dropped = dict(self._dropped)
        with self._lock:
            sampled = list(self._samples)
        timings = {name: self.percentiles(name) for name in sorted(sampled)}
        cpu = (self._cpu_stopped or time.process_time()) - self._cpu_started
        frames_out = counts.pop("frames_out", 0)
        masks = counts.pop("masks", 0)
        with self._lock:
            marks, cpu_marks = dict(self._marks), dict(self._cpu_marks)
        startup = (
            {"startup_s": marks["first_frame_out"], "startup": marks, "startup_cpu": cpu_marks}
            if "first_frame_out" in marks
            else {}
        )
        return {
            **self.info,
            "frames_in": counts.pop("frames_in", 0),
            "frames_out": frames_out,
            "masks": masks,
            "duration_s": round(elapsed, 3),
            "fps_out": round(frames_out / elapsed, 3) if elapsed else 0.0,
            "mask_fps": round(masks / elapsed, 3) if elapsed else 0.0,
            "stage_ms": stage_ms,
            "timings": timings,
            "cpu_percent": round(100.0 * cpu / elapsed, 1) if elapsed else 0.0,
            "peak_rss_mb": peak_rss_mb(),
            "dropped": dropped,
            **startup,
            **counts,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text, as ``--stats`` writes it."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write_json(self, path: Path) -> None:
        """:meth:`to_json` to ``path`` (raises OSError; ``vbg run`` writes it whole or not at
        all, with a one-line error, through :func:`vbg.outputs.files.write_file`)."""
        path.write_text(self.to_json())
