"""The live Pipeline: capture -> inference -> compositor -> sinks, each on its own thread.

All of vbg's threading lives in this module.

- The capture thread reads the Source into a :class:`LatestSlot` (the newest frame wins).
- The inference thread segments the newest frame at reduced resolution, smooths the mask over
  time and publishes it as a Keyframe, also through a LatestSlot; it skips frames it cannot keep
  up with.
- The compositor thread takes every captured frame with the newest Keyframe, moves the mask along
  the optical flow to that frame and refines it to full size (:class:`vbg.mask_filters.MaskPath`),
  blends, so the output keeps the camera's rate even when the model is slower, and hands the
  result to each sink's :class:`DropOldestQueue` (and to the display queue the main thread shows).
- Each sink has its own thread, so a slow recorder never stalls the virtual camera.

One stop event ends everything; a worker's exception is kept and raised by :meth:`Pipeline.stop`
in the main thread. What the user should know while it runs (the camera was lost and is back,
the model moved to the CPU, a background could not be shown) travels to the main thread as text
messages on :attr:`Pipeline.messages`.

Faults it rides out: a camera that stops sending frames (the output repeats the last frame with
a notice while the camera is reopened with backoff), and a model that fails on a GPU (it is
loaded again on the CPU, once).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import cv2
import numpy as np
import torch

from vbg.compositing.compositor import Compositor, banner
from vbg.errors import SourceLost
from vbg.mask_filters import Keyframe, MaskOptions, MaskPath, grey
from vbg.outputs.sinks import Sink
from vbg.segmentation.segmenter import Segmenter
from vbg.sources.capture import Source
from vbg.stats import Stats

T = TypeVar("T")
Frame = np.ndarray  # H x W x 3 uint8, BGR
Mask = np.ndarray  # H x W float32 in [0, 1]

JOIN_TIMEOUT = 5.0
INFERENCE_NICENESS = 10  # how much lower the model thread's priority is (Linux)
STILL_SIZE = (64, 36)  # frames are compared at this size to tell a still scene
STILL_THRESHOLD = 0.5  # mean grey difference (0-255) below which a frame counts as unchanged
STILL_REFRESH = 1.0  # a still scene is still segmented again this often (seconds)
SINK_QUEUE_SECONDS = 2.0  # a sink may fall this far behind before its oldest frames are dropped
RECONNECT_FIRST = 0.5  # seconds before the first try to reopen a lost camera; doubled each try
RECONNECT_MAX = 5.0  # at most this long between tries
LOST_NOTICE = "camera lost, reconnecting..."


@dataclasses.dataclass(frozen=True)
class Captured:
    """A frame from the source with its capture time (``time.monotonic()``); ``lost``: the last
    good frame shown again while the camera is gone."""

    frame: Frame
    captured_at: float
    lost: bool = False


class LatestSlot(Generic[T]):
    """Holds only the newest item, with a sequence number; readers wait for a newer one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._seq = 0
        self._closed = False

    def put(self, item: T) -> None:
        with self._cond:
            self._item = item
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        """No more items will come; waiting readers return."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def latest(self) -> tuple[int, T | None]:
        """The newest (sequence number, item) without waiting; (0, None) before the first."""
        with self._cond:
            return self._seq, self._item

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, T] | None:
        """The newest item if its sequence number is above ``seen``, waiting up to ``timeout``.

        Returns None on timeout, or when the slot is closed and nothing newer is left.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen or self._closed, timeout)
            if self._seq > seen and self._item is not None:
                return self._seq, self._item
            return None

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed


class DropOldestQueue(Generic[T]):
    """A bounded FIFO that drops its OLDEST item when full, counting what it dropped."""

    def __init__(self, maxsize: int) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque[T] = collections.deque()
        self.maxsize = maxsize
        self.dropped = 0
        self._closed = False

    def put(self, item: T) -> None:
        with self._cond:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float) -> T | None:
        """The oldest item, waiting up to ``timeout``; None on timeout or once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Readers get what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class _SinkRunner:
    """A sink with its own thread and queue; the thread closes the sink when it ends."""

    def __init__(self, sink: Sink, maxsize: int, pipeline: Pipeline) -> None:
        self.sink = sink
        self.queue: DropOldestQueue[Captured] = DropOldestQueue(maxsize)
        self.thread = threading.Thread(
            target=pipeline._guard, args=(self._run,), name=f"vbg-sink-{sink.name}"
        )
        self._stats = pipeline.stats

    def _run(self) -> None:
        last = float("-inf")
        try:
            while True:
                item = self.queue.get(timeout=0.1)
                if item is None:
                    if self.queue.closed:
                        return
                    continue
                if item.captured_at < last:  # never expected: the soak benchmark watches it
                    self._stats.count(f"{self.sink.name}_out_of_order")
                last = item.captured_at
                started = time.perf_counter()
                self.sink.write(item.frame)
                self._stats.add_time(self.sink.name, time.perf_counter() - started)
                self._stats.count(f"{self.sink.name}_frames")
                # Capture to the sink's write: what a viewer of this output waits.
                self._stats.add_sample(
                    f"latency_{self.sink.name}", time.monotonic() - item.captured_at
                )
        finally:
            self._stats.set_dropped(self.sink.name, self.queue.dropped)
            self.sink.close()


def share_cores() -> int:
    """Let the model's intra-op threads use all cores but one, so that capture, compositing and
    the sinks always have a core and the output keeps the camera's rate; returns the count.

    On 2 cores this is 1 torch thread. Against 2 (benchmarks/threads_ab.py, 3 rounds): with
    fcn_resnet50 the output held 29.7 fps instead of 28.8 and latency p95 fell from 54 to 35 ms
    at the same mask rate; mediapipe_selfie was the same either way."""
    cores = os.cpu_count() or 1
    threads = max(1, min(torch.get_num_threads(), cores - 1))
    torch.set_num_threads(threads)
    return threads


def _yield_to_other_stages() -> None:
    """Give the calling thread (the model's) a lower scheduling priority, so that capture,
    compositing and the sinks run first when the cores are busy and frames never wait for the
    model. Linux can do this per thread; elsewhere the call is not available and nothing changes
    (the output then relies on share_cores alone)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: a speed aid, not a need
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)


class Pipeline:
    """Runs the live stages on threads. Use :meth:`start`, then :meth:`stop` (also on error).

    ``display`` adds a one-frame queue (:attr:`display_frames`) that the main thread reads to show
    the preview window. ``max_frames`` stops the pipeline after that many output frames (0: never).
    ``skip_still``: when a frame barely differs from the one the model last saw (under a second
    ago), the model skips it and the mask is reused.
    ``fallback`` builds the same segmenter on the CPU; when the model fails on another device, it
    is used from then on (once).
    ``every_frame``: the capture waits until the compositor has taken its last frame, so every
    frame of a file read at full speed is composited (a camera never waits: leave it off).
    """

    def __init__(
        self,
        source: Source,
        segmenter: Segmenter,
        compositor: Compositor,
        sinks: list[Sink],
        *,
        mask_options: MaskOptions | None = None,
        display: bool = False,
        max_frames: int = 0,
        stats: Stats | None = None,
        skip_still: bool = True,
        fallback: Callable[[], Segmenter] | None = None,
        every_frame: bool = False,
    ) -> None:
        self.source = source
        self.segmenter = segmenter
        self.compositor = compositor
        self.stats = stats or Stats()
        self.max_frames = max_frames
        self.display_frames: DropOldestQueue[Frame] | None = DropOldestQueue(1) if display else None
        self._path = MaskPath(mask_options)
        self.skip_still = skip_still
        self.fallback = fallback
        self.messages: DropOldestQueue[str] = DropOldestQueue(32)
        self._lost = threading.Event()  # the live source is gone; being reopened
        # every_frame: the capture takes this before each frame, the compositor gives it back.
        self._taken = threading.Semaphore(1) if every_frame else None
        self._last_segmented: tuple[float, np.ndarray] | None = None
        self._frames: LatestSlot[Captured] = LatestSlot()
        self._masks: LatestSlot[Keyframe] = LatestSlot()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._sinks_lock = threading.Lock()
        self._queue_size = max(2, round(SINK_QUEUE_SECONDS * source.fps))
        self._sinks: list[_SinkRunner] = [_SinkRunner(s, self._queue_size, self) for s in sinks]
        self._threads = [
            threading.Thread(target=self._guard, args=(self._capture,), name="vbg-capture"),
            threading.Thread(target=self._guard, args=(self._infer,), name="vbg-inference"),
            threading.Thread(target=self._guard, args=(self._composite,), name="vbg-compositor"),
        ]
        self._started_at = 0.0

    # -- control, from the main thread ------------------------------------------------------

    def start(self) -> None:
        """Start every stage's thread (and leave a core free for them, see :func:`share_cores`)."""
        if self.segmenter.device.type == "cpu":
            share_cores()
        self._started_at = time.monotonic()
        self.stats.start()
        for runner in self._sinks:
            runner.thread.start()
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        """True until the source ends, ``max_frames`` is reached, a stage fails or stop is asked."""
        return not self._finished.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the pipeline to finish; True once it has."""
        return self._finished.wait(timeout)

    def add_sink(self, sink: Sink) -> None:
        """Start sending output frames to ``sink`` (on its own thread) from the next frame."""
        runner = _SinkRunner(sink, self._queue_size, self)
        runner.thread.start()
        with self._sinks_lock:
            self._sinks.append(runner)

    def remove_sink(self, sink: Sink) -> None:
        """Stop sending frames to ``sink``; it writes what it has queued and is closed."""
        with self._sinks_lock:
            runners = [r for r in self._sinks if r.sink is sink]
            self._sinks = [r for r in self._sinks if r.sink is not sink]
        for runner in runners:
            runner.queue.close()
            runner.thread.join(JOIN_TIMEOUT)

    def queue_lengths(self) -> dict[str, int]:
        """How many frames wait in each sink's queue now."""
        with self._sinks_lock:
            return {runner.sink.name: len(runner.queue) for runner in self._sinks}

    def stop(self) -> None:
        """Stop all stages, let each sink write what it has queued, and join the threads.

        Raises the first exception a stage raised, if any.
        """
        self.stats.stop()  # the run's figures end here, not after waiting for the threads
        self._stop.set()
        self._frames.close()
        self._masks.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(JOIN_TIMEOUT)
        with self._sinks_lock:
            runners = list(self._sinks)
        for runner in runners:
            runner.queue.close()
        for runner in runners:
            if runner.thread.is_alive():
                runner.thread.join(JOIN_TIMEOUT)
        if self.display_frames is not None:
            self.display_frames.close()
        self._finished.set()
        if self._error is not None:
            raise self._error

    # -- the stages, each on its own thread -------------------------------------------------

    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # handed to the main thread by stop()
            with self._error_lock:
                if self._error is None:
                    self._error = exc
            self._finish()

    def _finish(self) -> None:
        # The output has ended: the rates end here, not when the model's last mask is done.
        self.stats.stop()
        self._stop.set()
        self._frames.close()
        self._finished.set()

    def post(self, text: str) -> None:
        """Send the user a message (the main thread shows and logs it)."""
        self.messages.put(text)

    def _capture(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                frame = self.source.read()
            except SourceLost as exc:
                if not self.source.live:
                    raise
                if not self._reconnect(exc):  # stopped while the camera was gone
                    break
                continue
            if frame is None:  # end of a file
                break
            self.stats.add_time("capture", time.perf_counter() - started)
            if self._taken is not None and not self._wait_taken():
                break
            self.stats.count("frames_in")
            self._frames.put(Captured(frame, time.monotonic()))
        self._frames.close()

    def _wait_taken(self) -> bool:
        """every_frame: wait until the compositor has taken the last frame; False on stop."""
        while self._taken is not None and not self._taken.acquire(timeout=0.1):
            if self._stop.is_set():
                return False
        return True

    def _reconnect(self, exc: SourceLost) -> bool:
        """Reopen the lost source, waiting longer after each failed try, until it is back (True)
        or the pipeline stops (False). Meanwhile the compositor repeats the last frame."""
        self._lost.set()
        self.stats.count("source_lost")
        self.post(f"{exc} Reconnecting...")
        delay = RECONNECT_FIRST
        while not self._stop.wait(delay):
            try:
                self.source.reopen()
            except SourceLost:
                delay = min(2.0 * delay, RECONNECT_MAX)
                continue
            self._lost.clear()
            self.post(f"{self.source.description} is back.")
            return True
        return False

    def _newer_frames(self, counter: str | None = None, repeat: bool = False) -> Iterator[Captured]:
        """Each newest captured frame once, until stop or the end of the source.

        Frames that were replaced before this reader got to them are counted in ``counter``.
        ``repeat``: while the source is lost, the last frame again at the source's rate, marked.
        """
        seen = 0
        last: Captured | None = None
        period = 1.0 / self.source.fps
        while not self._stop.is_set():
            lost = self._lost.is_set()
            item = self._frames.wait_newer(seen, timeout=period if lost else 0.1)
            if item is None:
                if self._frames.closed:
                    return
                if repeat and lost and last is not None:
                    yield Captured(last.frame, time.monotonic(), lost=True)
                continue
            last = item[1]
            if counter and seen and item[0] > seen + 1:
                self.stats.count(counter, item[0] - seen - 1)
            seen = item[0]
            yield item[1]

    def _still(self, captured: Captured) -> bool:
        """Whether ``captured`` barely differs from the last frame the model saw (and that was
        recently), so its mask can be reused: a still scene costs little CPU."""
        if not self.skip_still:
            return False
        tiny = grey(captured.frame, *STILL_SIZE)
        last = self._last_segmented
        if (
            last is not None
            and captured.captured_at - last[0] < STILL_REFRESH
            and float(cv2.absdiff(tiny, last[1]).mean()) < STILL_THRESHOLD
        ):
            return True
        self._last_segmented = (captured.captured_at, tiny)
        return False

    def _infer(self) -> None:
        _yield_to_other_stages()
        for captured in self._newer_frames():
            if self._still(captured):
                self.stats.count("masks_skipped")
                continue
            started = time.perf_counter()
            small = self._predict(captured.frame)
            keyframe = self._path.keyframe(small, captured.frame, captured.captured_at)
            self.stats.add_time("segment", time.perf_counter() - started)
            self.stats.count("masks")
            self._masks.put(keyframe)

    def _predict(self, frame: Frame) -> Mask:
        """The segmenter's mask for ``frame``; a model failing on a GPU moves to the CPU once."""
        try:
            return self.segmenter.predict(frame)
        except Exception as exc:  # CUDA or MPS out of memory, a driver error: RuntimeError
            if self.segmenter.device.type == "cpu" or self.fallback is None:
                raise
            failed = self.segmenter.device.type
            self.segmenter = self.fallback()
            share_cores()
            self.stats.info["device"] = f"{self.segmenter.device.type} (after {failed} failed)"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.post(
                f"The model failed on {failed} ({reason}); running it on the CPU from now on."
            )
            return self.segmenter.predict(frame)

    def _composite(self) -> None:
        frames_out = 0
        mask: Mask | None = None
        try:
            for captured in self._newer_frames("frames_skipped", repeat=True):
                _, keyframe = self._masks.latest()
                if self._taken is not None and not captured.lost:
                    self._taken.release()  # the capture may read the next frame
                if captured.lost:
                    pass  # the same frame again: the same mask
                elif keyframe is not None:
                    started = time.perf_counter()
                    mask = self._path.mask_for(keyframe, captured.frame, captured.captured_at)
                    self.stats.add_time("refine", time.perf_counter() - started)
                    self.stats.add_sample("mask_age", captured.captured_at - keyframe.captured_at)
                started = time.perf_counter()
                out = self.compositor.composite(
                    captured.frame, mask, captured.captured_at - self._started_at
                )
                if captured.lost:
                    out = banner(out, LOST_NOTICE)
                self.stats.add_time("composite", time.perf_counter() - started)
                for text in self.compositor.take_notices():
                    self.post(text)
                with self._sinks_lock:
                    runners = list(self._sinks)
                output = Captured(out, captured.captured_at)
                for runner in runners:
                    runner.queue.put(output)
                if self.display_frames is not None:
                    self.display_frames.put(out)
                frames_out += 1
                self.stats.count("frames_out")
                if self.max_frames and frames_out >= self.max_frames:
                    break
        finally:
            self._finish()
