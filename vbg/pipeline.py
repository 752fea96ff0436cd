"""The live Pipeline: capture -> inference -> compositor -> outputs, each on its own thread.

All of vbg's threading lives in this module; what is done to a frame is not (the stages are
:class:`vbg.sources.capture.Source`, :class:`vbg.processor.FrameProcessor` and the
:class:`vbg.outputs.sinks.Sink` s). The pipeline only starts, feeds and stops threads:

- The capture thread reads the Source into a :class:`LatestSlot` (the newest frame wins).
- The inference thread runs the processor's model half on the newest frame and publishes the
  Keyframe through a LatestSlot; frames it cannot keep up with are skipped.
- The compositor thread runs the processor's compositor half on every captured frame with the
  newest Keyframe, so the output keeps the camera's rate when the model is slower, and hands the
  result to each sink's :class:`DropOldestQueue`. While the model keeps up with the camera
  (:class:`SyncPolicy`), it first holds the frame, within a bound, until the model is done with
  it, so that the frame is shown with its own mask instead of the one before (no lag).
- Each sink (the virtual camera, a recording, the preview) has its own thread, so a slow
  recorder never stalls the virtual camera.

Errors are turned into :class:`vbg.errors.VbgError` s where they happen (a camera's read, the
model, compositing, an output), chained with ``from``. A failing output is dropped with a
message and the run goes on while another output is left; any other failure ends the run and
:meth:`Pipeline.stop` raises it in the main thread. One stop event ends everything.

Stopping is bounded and cannot be cut short: :meth:`Pipeline.stop` closes the sink queues first,
waits at most :data:`SHUTDOWN_TIMEOUT` for the threads (the model's run in progress at most
:data:`MODEL_GRACE` of it: a slow model's last mask is not awaited), then finalises every output.
It does that on a thread of its own, so that a Ctrl-C arriving meanwhile (a KeyboardInterrupt in
the main thread) waits for it and is raised after, never leaving a recording unfinalised. Every
thread is a daemon: one still inside a torch call cannot keep the process alive.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vbg.errors import ModelError, ProcessingError, SinkError, SourceError, VbgError
from vbg.images import Frame
from vbg.mask_filters import Keyframe
from vbg.outputs.sinks import Sink
from vbg.processor import FrameProcessor
from vbg.segmentation.options import MODES
from vbg.sources.capture import Source
from vbg.stats import Stats

log = logging.getLogger("vbg")
T = TypeVar("T")

JOIN_TIMEOUT = 5.0  # a sink removed while the run goes on (the r key) may take this to end
# Stopping: the most stop() waits for the threads, all of them together (seconds), before it
# finalises the outputs without them; of it, the model's run in progress gets at most
# MODEL_GRACE (a slow model's last mask is of no use once the output has ended). A sink's close
# waits at least CLOSE_GRACE for a write that still runs.
SHUTDOWN_TIMEOUT = 3.0
MODEL_GRACE = 0.5
CLOSE_GRACE = 1.0
INFERENCE_NICENESS = 10  # how much lower the model thread's priority is (Linux)
SINK_QUEUE_SECONDS = 2.0  # a sink may fall this far behind before its oldest frames are dropped
# The most a frame is held for its own mask (seconds). Holding the picture delays it against the
# sound: ITU-R BT.1359 puts the threshold where viewers notice sound ahead of the picture at
# about 45 ms, so a hold of this size stays about at the edge of what anyone could notice.
SYNC_MAX_WAIT = 0.050
SYNC_KEEPS_UP = 0.75  # auto: the model keeps up while its recent time per mask is under this
# share of the frame interval (the rest is room for a slow run and for the other threads)
SYNC_SLACK = 2.0  # auto: a frame waits up to this many of the model's recent times per mask
SYNC_RUNS_KEPT = 15  # the recent time per mask is the median of this many runs (a spike is not)


@dataclasses.dataclass(frozen=True)
class Captured:
    """A frame from the source. ``t``: seconds since the pipeline started, by its clock;
    ``captured_at``: ``time.monotonic()`` when it was read; ``notice``: set when the frame is a
    stand-in (the last good frame shown again while the camera is gone), with what every viewer
    should see."""

    frame: Frame
    t: float
    captured_at: float
    notice: str | None = None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


class SyncPolicy:
    """Whether, and for how long, a frame is held until the model is done with it, so that it is
    shown with its own mask. Pure (no threads, no clock): the live pipeline and ``vbg eval``'s
    replay share it, so that the replay shows what ``vbg run`` does.

    ``mode`` (the config's ``sync``): ``"off"`` never holds a frame (the newest mask, moved along
    the optical flow, as when the model is slower than the camera); ``"on"`` always holds it, up
    to the bound; ``"auto"`` holds it while the model keeps up: the median of its recent times
    per mask (:meth:`observe`) is under ``SYNC_KEEPS_UP`` (3/4) of the frame interval, so the
    model can make every frame's mask with time to spare. Before the first mask, auto does not
    hold.

    The bound, :meth:`wait_limit`: at most ``max_wait`` seconds (50 ms, about where a viewer could
    notice the picture behind the sound) and at most one frame interval (``1 / fps`` seconds: by
    then the next frame is there, and a longer hold would make the output fall behind the
    camera); in auto also at most ``SYNC_SLACK`` (2) recent times per mask: the frame's own model
    run, with room for one twice as slow as usual, never a queue of runs.
    """

    def __init__(self, mode: str, fps: float, *, max_wait: float = SYNC_MAX_WAIT) -> None:
        if mode not in MODES:
            raise ValueError(f"sync must be one of {', '.join(MODES)}, not {mode!r}")
        if not (fps > 0 and max_wait >= 0):  # NaN fails too
            raise ValueError(f"fps must be above 0 and max_wait 0 or more ({fps}, {max_wait})")
        self.mode = mode
        self.frame_interval = 1.0 / fps  # seconds
        self.max_wait = max_wait
        self._runs: collections.deque[float] = collections.deque(maxlen=SYNC_RUNS_KEPT)

    def observe(self, seconds: float) -> None:
        """Take the time (seconds) of one model run that made a mask."""
        self._runs.append(seconds)

    @property
    def seconds_per_mask(self) -> float | None:
        """The model's recent time per mask (seconds; the median of its last runs), or None
        before the first."""
        return statistics.median(self._runs) if self._runs else None

    @property
    def keeps_up(self) -> bool:
        """Whether the model's recent time per mask leaves room in the frame interval."""
        recent = self.seconds_per_mask
        return recent is not None and recent < SYNC_KEEPS_UP * self.frame_interval

    def wait_limit(self) -> float:
        """How long (seconds) a frame arriving now may be held for its own mask; 0: not held."""
        bound = min(self.max_wait, self.frame_interval)
        if self.mode == "on":
            return bound
        recent = self.seconds_per_mask
        if self.mode == "off" or recent is None or not self.keeps_up:
            return 0.0
        return min(bound, SYNC_SLACK * recent)


class _ModelProgress:
    """Where the model thread is, by frame (a frame is known by its capture time ``t``): the
    frame it started on last and the newest it is done with, with a mask or without one (a still
    scene, a frame shown again). The compositor waits on it for a frame's own mask; the
    :class:`SyncPolicy` lives behind its lock, as both threads use it."""

    def __init__(self, policy: SyncPolicy) -> None:
        self._cond = threading.Condition()
        self._policy = policy
        self._started = -math.inf
        self._done = -math.inf
        self._closed = False

    def start(self, t: float) -> None:
        """The model starts on the frame captured at ``t``."""
        with self._cond:
            self._started = t
            self._cond.notify_all()

    def finish(self, t: float, seconds: float | None = None) -> None:
        """The model is done with the frame captured at ``t``; ``seconds``: how long it took,
        when it made a mask (None: no new mask for this frame, the last one is used on)."""
        with self._cond:
            self._done = t
            if seconds is not None:
                self._policy.observe(seconds)
            self._cond.notify_all()

    def close(self) -> None:
        """The model thread has ended: nothing is waited for any more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, t: float) -> tuple[bool, float]:
        """Hold the caller until the model is done with the frame captured at ``t``, within the
        policy's bound. Returns (whether it is done with it, the bound in seconds): it is not when
        the bound passed, the model went on to a later frame instead, or it has ended."""
        with self._cond:
            limit = self._policy.wait_limit()
            if limit > 0:
                self._cond.wait_for(
                    lambda: self._done >= t or self._started > t or self._closed, limit
                )
            return self._done >= t, limit


class DropOldestQueue(Generic[T]):
    """A bounded FIFO that drops its OLDEST item when full, counting what it dropped."""

    def __init__(self, maxsize: int) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque[T] = collections.deque()
        self.maxsize = maxsize
        self.dropped = 0
        self._closed = False

    def put(self, item: T) -> None:
        """Add ``item``, dropping the oldest when full; once closed, ``item`` is dropped."""
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
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

    def discard(self) -> None:
        """Drop every item left (counted as dropped) and close: readers get None."""
        with self._cond:
            self.dropped += len(self._items)
            self._items.clear()
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def _as_sink_error(sink: Sink, exc: Exception) -> SinkError:
    """``exc`` from ``sink.write`` as a SinkError chained to it (pyvirtualcam, OpenCV and the
    file system raise their own types)."""
    if isinstance(exc, SinkError):
        return exc
    error = SinkError(f"The {sink.name} output failed ({_reason(exc)}).")
    error.__cause__ = exc
    return error


class _SinkRunner:
    """A sink with its own thread and queue. A sink that fails is reported to the pipeline and
    its thread ends; the sink is closed by whoever ends it (never during a write: see Sink)."""

    def __init__(self, sink: Sink, maxsize: int, pipeline: Pipeline) -> None:
        self.sink = sink
        self.queue: DropOldestQueue[Captured] = DropOldestQueue(maxsize)
        self.thread = threading.Thread(target=self._run, name=f"vbg-sink-{sink.name}", daemon=True)
        self._pipeline = pipeline
        self._stats = pipeline.stats

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get(timeout=0.1)
                if item is None:
                    if self.queue.closed:
                        return
                    continue
                started = time.perf_counter()
                try:
                    self.sink.write(item.frame)
                except Exception as exc:  # noqa: BLE001 - any failure: this output is dropped
                    self._pipeline._sink_failed(self, _as_sink_error(self.sink, exc))
                    return
                self._stats.add_time(self.sink.name, time.perf_counter() - started)
                self._stats.count(f"{self.sink.name}_frames")
                # Capture to the sink's write: what a viewer of this output waits.
                self._stats.add_sample(
                    f"latency_{self.sink.name}", time.monotonic() - item.captured_at
                )
        finally:
            self._stats.set_dropped(self.sink.name, self.queue.dropped)

    def finish(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Let the sink write what it has queued for up to ``timeout`` seconds, drop what is
        still left, then close it. A failure to finalise is raised as a :class:`SinkError`."""
        self.queue.close()
        if self.thread.ident is not None:  # started
            self.thread.join(max(timeout, 0.0))
        if self.thread.is_alive():  # behind, or stuck in a write: it writes nothing more
            self.queue.discard()
            log.warning(
                "The %s output fell behind; the frames it had queued were left out at the end.",
                self.sink.name,
            )
        self._stats.set_dropped(self.sink.name, self.queue.dropped)  # with those put after close
        try:
            closed = self.sink.close(max(timeout, CLOSE_GRACE))
        except Exception as exc:  # noqa: BLE001 - finalising failed (a full disk): reported
            error = _as_sink_error(self.sink, exc)
            raise error from error.__cause__
        if not closed:
            log.warning("The %s output was still writing; it was not closed.", self.sink.name)


def _yield_to_other_stages() -> None:
    """Give the calling thread (the model's) a lower scheduling priority, so that capture,
    compositing and the sinks run first when the cores are busy and frames never wait for the
    model. Linux can do this per thread; elsewhere the call is not available and nothing changes."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: a speed aid, not a need
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)


class Pipeline:
    """Runs the live stages on threads. Use :meth:`start`, then :meth:`stop` (also on error).

    ``max_frames`` stops the pipeline after that many output frames (0: never). ``sync``: when
    a frame waits for its own mask, a :class:`SyncPolicy` or its mode (``"auto"``, ``"on"``,
    ``"off"``) for the source's frame rate. ``clock`` (seconds) times the frames: each frame's
    ``t``, which the processor's filters and its "no person found" warning go by
    (``time.monotonic`` by default; a test passes one that counts frames).
    """

    def __init__(
        self,
        source: Source,
        processor: FrameProcessor,
        sinks: list[Sink],
        *,
        max_frames: int = 0,
        stats: Stats | None = None,
        sync: SyncPolicy | str = "auto",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._clock = clock
        self.processor = processor
        self.stats = stats or Stats()
        self.max_frames = max_frames
        self._frames: LatestSlot[Captured] = LatestSlot()
        self._masks: LatestSlot[Keyframe] = LatestSlot()
        self.sync = sync if isinstance(sync, SyncPolicy) else SyncPolicy(sync, source.fps)
        self._progress = _ModelProgress(self.sync)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._sinks_lock = threading.Lock()
        self._queue_size = max(2, round(SINK_QUEUE_SECONDS * source.fps))
        self._sinks: list[_SinkRunner] = [_SinkRunner(s, self._queue_size, self) for s in sinks]
        self._ended: list[_SinkRunner] = []  # sinks that failed or were removed, to close
        # Daemon threads: stop() ends them and finalises the outputs; should the main thread
        # leave without it, they must not keep the process alive (a looping file never ends).
        self._threads = [
            threading.Thread(target=self._guard, args=(body,), name=name, daemon=True)
            for body, name in (
                (self._capture, "vbg-capture"),
                (self._infer, "vbg-inference"),
                (self._composite, "vbg-compositor"),
            )
        ]
        self._started_at = 0.0  # the clock's time at start
        self._stopper: threading.Thread | None = None  # stop()'s thread, once it is asked
        self._stopper_lock = threading.Lock()

    # -- control, from the main thread ------------------------------------------------------

    def start(self) -> None:
        """Start every stage's thread. Call :meth:`stop` after it, also when it raised (a
        KeyboardInterrupt while the threads start): stop ends those that started."""
        self._started_at = self._clock()
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

    @property
    def sinks(self) -> list[Sink]:
        """The outputs frames go to now."""
        with self._sinks_lock:
            return [runner.sink for runner in self._sinks]

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
            runner.finish()

    def queue_lengths(self) -> dict[str, int]:
        """How many frames wait in each sink's queue now."""
        with self._sinks_lock:
            return {runner.sink.name: len(runner.queue) for runner in self._sinks}

    def stop(self) -> None:
        """Stop all stages, let each sink write what it has queued, finalise (close) every
        output, within :data:`SHUTDOWN_TIMEOUT` for the threads. Raises the first error a stage
        or an output's finalising raised, if any (a :class:`VbgError`).

        Safe to call again (it waits for the first call's work) and safe to interrupt: the work
        runs on a thread of its own; a KeyboardInterrupt (Ctrl-C) that reaches the caller
        meanwhile waits for it to finish and is raised after (a stage's error first)."""
        with self._stopper_lock:
            if self._stopper is None:
                self._stopper = threading.Thread(
                    target=self._guard, args=(self._shut_down,), name="vbg-stop", daemon=True
                )
                self._stopper.start()
            stopper = self._stopper
        interrupted: KeyboardInterrupt | None = None
        while True:
            try:
                stopper.join()
                self._finished.set()
                break
            except KeyboardInterrupt as exc:  # the outputs are finalised first, then it counts
                interrupted = interrupted or exc
        if self._error is not None:
            raise self._error
        if interrupted is not None:
            raise interrupted

    def _shut_down(self) -> None:
        """stop()'s work, on its own thread: end the stages, then finalise the outputs."""
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT
        self.stats.stop()  # the run's figures end here, not after waiting for the threads
        self._stop.set()
        self._frames.close()
        self._masks.close()
        self._progress.close()
        with self._sinks_lock:
            runners, self._sinks = self._sinks + self._ended, []
            self._ended = []
        for runner in runners:  # first: each sink's thread writes what is queued, then ends
            runner.queue.close()
        capture, inference, compositor = self._threads
        for thread in (compositor, capture):
            if thread.is_alive():
                thread.join(max(deadline - time.monotonic(), 0.0))
        if inference.is_alive():  # told to stop; its run in progress is not awaited
            inference.join(min(max(deadline - time.monotonic(), 0.0), MODEL_GRACE))
        for runner in runners:
            try:
                runner.finish(deadline - time.monotonic())
            except SinkError as exc:  # finalising failed: the run ends with it, others go on
                with self._error_lock:
                    if self._error is None:
                        self._error = exc
                    else:
                        log.error("%s", exc)

    # -- what the threads report ------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self._finish()

    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # handed to the main thread by stop()
            self._fail(exc)

    def _finish(self) -> None:
        # The output has ended: the rates end here, not when the model's last mask is done.
        self.stats.stop()
        self._stop.set()
        self._frames.close()
        self._progress.close()
        self._finished.set()

    def _sink_failed(self, runner: _SinkRunner, error: SinkError) -> None:
        """Drop a failing output; the run goes on while another one is left, unless the output
        is vital (a recording the user asked for): then the run ends with its error."""
        with self._sinks_lock:
            if runner in self._sinks:
                self._sinks.remove(runner)
                self._ended.append(runner)
            left = len(self._sinks)
        self.stats.count("outputs_failed")
        if left and not runner.sink.vital:
            log.warning("%s Going on without it.", error)
            return
        self._fail(error)

    # -- the stages, each on its own thread -------------------------------------------------

    def _capture(self) -> None:
        lost = False
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                frame = self.source.read()
            except VbgError:
                raise
            except Exception as exc:  # cv2.error, OSError: the camera or file broke
                raise SourceError(
                    f"Reading {self.source.description} failed ({_reason(exc)}). Check the "
                    "camera or file, or pick another with --source."
                ) from exc
            if frame is None:  # end of a file
                break
            notice = self.source.notice
            if notice and not lost:
                self.stats.count("source_lost")
            lost = bool(notice)
            self.stats.add_time("capture", time.perf_counter() - started)
            self.stats.count("frames_in")
            t = self._clock() - self._started_at
            self._frames.put(Captured(frame, t, time.monotonic(), notice))
        self._frames.close()

    def _newer_frames(self, counter: str | None = None) -> Iterator[Captured]:
        """Each newest captured frame once, until stop or the end of the source.

        Frames that were replaced before this reader got to them are counted in ``counter``.
        """
        seen = 0
        while not self._stop.is_set():
            item = self._frames.wait_newer(seen, timeout=0.1)
            if item is None:
                if self._frames.closed:
                    return
                continue
            if counter and seen and item[0] > seen + 1:
                self.stats.count(counter, item[0] - seen - 1)
            seen = item[0]
            yield item[1]

    def _infer(self) -> None:
        _yield_to_other_stages()
        try:
            for captured in self._newer_frames():
                if captured.notice:  # the same frame again: its mask is made
                    self._progress.finish(captured.t)
                    continue
                self._progress.start(captured.t)
                started = time.perf_counter()
                keyframe = self._keyframe(captured)
                if keyframe is None:  # a still scene: the last mask is used on
                    self.stats.count("masks_skipped")
                    self._progress.finish(captured.t)
                    continue
                took = time.perf_counter() - started
                # The keyframe first, then the count, then finish: whoever sees either finds the
                # keyframe in the slot (a model thread preempted between them, as its lower
                # priority allows on a busy machine, once left a counted mask unseen for a second).
                self._masks.put(keyframe)
                self.stats.add_time("segment", took)
                self.stats.count("masks")
                self._progress.finish(captured.t, took)
        finally:
            self._progress.close()

    def _keyframe(self, captured: Captured) -> Keyframe | None:
        """The processor's model half on a captured frame, its failures as a ModelError."""
        try:
            return self.processor.keyframe(captured.frame, captured.t)
        except VbgError:
            raise
        except Exception as exc:  # a model failing on the CPU, a bad .tflite graph
            segmenter = self.processor.segmenter
            raise ModelError(
                f"The model {segmenter.name} failed on {segmenter.device.type} "
                f"({_reason(exc)}). Try another --model, or --device cpu."
            ) from exc

    def _await_own_mask(self, captured: Captured) -> None:
        """Hold ``captured`` until the model is done with it, within the sync policy's bound
        (not a frame shown again: its mask is made); the time held is sampled as "sync_wait"."""
        if captured.notice:
            return
        started = time.monotonic()
        done, limit = self._progress.wait(captured.t)
        if limit > 0:
            self.stats.add_sample("sync_wait", time.monotonic() - started)
            self.stats.count("frames_held")
            if not done:
                self.stats.count("sync_missed")

    def _composite(self) -> None:
        frames_out = 0
        try:
            for captured in self._newer_frames("frames_skipped"):
                self._await_own_mask(captured)
                _, keyframe = self._masks.latest()
                started = time.perf_counter()
                try:
                    rendered = self.processor.render(
                        captured.frame,
                        keyframe,
                        captured.t,
                        notice=captured.notice,
                        repeat=captured.notice is not None,
                    )
                except VbgError:
                    raise
                except Exception as exc:  # cv2.error in a filter or the blend
                    raise ProcessingError(
                        f"A frame could not be composited ({_reason(exc)})."
                    ) from exc
                self.stats.add_time("composite", time.perf_counter() - started)
                if rendered.mask_age is not None:
                    self.stats.add_sample("mask_age", rendered.mask_age)
                    if rendered.mask_age == 0:
                        self.stats.count("frames_own_mask")
                output = dataclasses.replace(captured, frame=rendered.frame, notice=None)
                with self._sinks_lock:
                    if self._stop.is_set():  # the outputs are being finalised: not out
                        break
                    runners = list(self._sinks)
                for runner in runners:  # a queue closed since counts the frame as dropped
                    runner.queue.put(output)
                frames_out += 1
                self.stats.count("frames_out")
                if self.max_frames and frames_out >= self.max_frames:
                    break
        finally:
            self._finish()
