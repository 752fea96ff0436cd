"""Stopping never hangs and never loses a recording: Ctrl-C, SIGTERM and SIGHUP, one or several
in quick succession, finalise every output, write the stats and end with 128 + the signal's number;
a slow model's last mask is not awaited.

The subprocess tests send real signals to ``python -m vbg`` recording the committed clip, with a
model far slower than the camera (an untrained lraspp at the largest --inference-size, one torch
thread: seconds per mask), so that a signal always comes while the model is inside a torch call,
as it did when two Ctrl-C hung vbg. Their ``wait(timeout=...)`` is a hang guard, not a speed
threshold: a stop takes about a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import av
import numpy as np
import pytest

from conftest import MemorySink, StandInSegmenter, decode_video, fixture_path
from vbg.compositing.backgrounds import ColorBackground
from vbg.compositing.compositor import Compositor
from vbg.mask_filters import MaskOptions
from vbg.outputs.sinks import RecordingSink, Sink
from vbg.pipeline import Pipeline
from vbg.processor import FrameProcessor
from vbg.sources.capture import VideoFileSource

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

SLOW = ["--model", "lraspp_mobilenet_v3_large", "--inference-size", "2048", "--device", "cpu"]
HANG_GUARD = 120  # seconds: far beyond a stop (about 1 s), only so that a hang fails the test


def _decoded_frames(path: Path) -> int:
    """The frames PyAV decodes from ``path`` (0 when it has none yet, or no index)."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, OSError):
        return 0


def _start(tmp_path: Path, weights: Path, suffix: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``vbg`` recording the looping clip to ``out<suffix>`` with the slow model, its messages
    to ``err.txt``; returned once the recording holds frames (an .mkv: 10 a player shows)."""
    out = tmp_path / f"out{suffix}"
    command = [sys.executable, "-m", "vbg", "--source", str(fixture_path("clip.mp4")), "--loop"]
    command += ["--no-preview", "--no-virtual-cam", "--record", str(out), *SLOW]
    command += ["--weights", str(weights), "--stats", str(tmp_path / "stats.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # slow enough, and kind to a 2-core machine
    with (tmp_path / "err.txt").open("wb") as err:
        vbg = subprocess.Popen(command, stderr=err, env=env)
    deadline = time.monotonic() + HANG_GUARD
    while vbg.poll() is None and time.monotonic() < deadline:
        ready = (
            _decoded_frames(out) >= 10 if suffix == ".mkv" else out.exists() and out.stat().st_size
        )
        if ready:
            break
        time.sleep(0.2)
    assert vbg.poll() is None, (tmp_path / "err.txt").read_text()
    return vbg, out


def _delivered(pid: int) -> None:
    """Wait until no signal is pending for process ``pid`` (Linux's /proc says; elsewhere, or
    once it has ended, at once): a second signal sent before then would merge with the first."""
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except OSError:
            return
        if int(fields.get("SigPnd", "0"), 16) == 0 and int(fields.get("ShdPnd", "0"), 16) == 0:
            return
        time.sleep(0.01)


def _stop(vbg: subprocess.Popen[bytes], *names: str) -> int:
    """Send the signals ``names`` in quick succession, as fast as a person presses Ctrl-C
    twice (each after the one before was delivered); the exit code (a hang fails the test)."""
    try:
        for n, name in enumerate(names):
            if n:
                _delivered(vbg.pid)
                time.sleep(0.1)
            vbg.send_signal(getattr(signal, name))
        return vbg.wait(timeout=HANG_GUARD)
    finally:
        vbg.kill()


def _assert_finalised(tmp_path: Path, out: Path, first: str) -> None:
    """The run said it stopped on ``first`` in one line, without a traceback; the recording
    plays, with as many frames as the stats say it holds, and a real picture."""
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err and "terminate called" not in err, err
    assert "vbg: stopped (" in err, err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["record_frames"] >= 1
    assert _decoded_frames(out) == stats["record_frames"]
    # Every frame out is in the file or counted as dropped, none lost on the way.
    assert stats["frames_out"] == stats["record_frames"] + stats["dropped"].get("record", 0)
    with av.open(str(out)) as container:
        last = list(container.decode(video=0))[-1].to_ndarray(format="bgr24")
    assert last.shape == (180, 320, 3) and last.std() > 10
    assert stats["masks"] == 0  # the model never finished one: its call was not awaited


@pytest.mark.parametrize(
    "signals",
    [("SIGINT", "SIGINT"), ("SIGTERM", "SIGTERM", "SIGTERM"), ("SIGINT", "SIGTERM")],
)
def test_signals_in_quick_succession_stop_without_a_hang(
    tmp_path: Path, fast_weights: Path, signals: tuple[str, ...]
) -> None:
    vbg, out = _start(tmp_path, fast_weights, ".mkv")
    code = _stop(vbg, *signals)
    assert code == 128 + getattr(signal, signals[0])  # the first says why: 130, 143
    _assert_finalised(tmp_path, out, signals[0])


def test_sighup_finalises_like_sigterm(tmp_path: Path, fast_weights: Path) -> None:
    # The terminal closed: an .mp4 plays only once finalised (its index is written last).
    vbg, out = _start(tmp_path, fast_weights, ".mp4")
    assert _stop(vbg, "SIGHUP") == 128 + signal.SIGHUP
    _assert_finalised(tmp_path, out, "SIGHUP")
    assert "stopped (SIGHUP, the terminal closed)" in (tmp_path / "err.txt").read_text()


def test_ctrl_c_on_vbg_process_keeps_the_frames_written(tmp_path: Path, fast_weights: Path) -> None:
    out = tmp_path / "out.mkv"
    command = [sys.executable, "-m", "vbg", "process", str(fixture_path("clip.mp4"))]
    command += ["-o", str(out), *SLOW[:2], "--inference-size", "768", "--device", "cpu"]
    command += ["--weights", str(fast_weights)]  # a second or so per frame, of the clip's 75
    err_path = tmp_path / "err.txt"
    with err_path.open("wb") as err:
        vbg = subprocess.Popen(command, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + HANG_GUARD
    while vbg.poll() is None and time.monotonic() < deadline:
        if "1/75 frames" in err_path.read_text():  # the progress line: a frame is done
            break
        time.sleep(0.2)
    assert _stop(vbg, "SIGINT", "SIGINT") == 130
    err = err_path.read_text()
    (line,) = [line for line in err.splitlines() if line.startswith("vbg: stopped")]
    assert line.startswith("vbg: stopped (Ctrl-C): ") and "Traceback" not in err, err
    written = int(line.split(": ")[2].split()[0])  # "N frames written to ..., playable"
    assert written >= 1 and _decoded_frames(out) == written


# -- in-process: the Pipeline's stop, with real signals and stand-in models -----------------------


def _processor(segmenter: StandInSegmenter) -> FrameProcessor:
    return FrameProcessor(segmenter, Compositor(ColorBackground((0, 255, 0))), MaskOptions())


class _SignalledRecording(RecordingSink):
    """A recording that, while it is being finalised, has a real SIGINT sent to the main thread
    and waits until the main thread has taken it (``taken``), then finishes the file."""

    def __init__(self, path: Path, taken: threading.Event) -> None:
        super().__init__(path, 320, 180, 50.0)  # the clip's size
        self.taken = taken

    def _close(self) -> None:
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        assert self.taken.wait(HANG_GUARD), "the main thread never took the SIGINT"
        super()._close()


def test_a_ctrl_c_while_stopping_waits_for_the_recording_then_counts(tmp_path: Path) -> None:
    taken = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        taken.set()
        raise KeyboardInterrupt

    source = VideoFileSource(fixture_path("clip.mp4"), fps=50.0)
    recording = _SignalledRecording(tmp_path / "rec.mkv", taken)
    pipeline = Pipeline(source, _processor(StandInSegmenter()), [recording], max_frames=30)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        pipeline.start()
        assert pipeline.wait(HANG_GUARD)
        with pytest.raises(KeyboardInterrupt):  # raised once the outputs are finalised
            pipeline.stop()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert taken.is_set() and recording.closed
    assert len(decode_video(tmp_path / "rec.mkv")) == recording.frames_written == 30
    assert not [t.name for t in threading.enumerate() if t.name.startswith("vbg-")]


class _StuckSink(Sink):
    """An output whose writes hang until ``release`` is set (a device that stopped answering)."""

    name = "stuck"

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release, self.writing = release, threading.Event()

    def _write(self, frame: np.ndarray) -> None:
        self.writing.set()
        self.release.wait()


def test_stop_does_not_await_a_slow_model_or_a_stuck_output(tmp_path: Path) -> None:
    release = threading.Event()
    segmenter = StandInSegmenter(hold=release)  # inside its first call until released
    source = VideoFileSource(fixture_path("clip.mp4"), fps=50.0)
    recording = RecordingSink(tmp_path / "rec.mp4", 320, 180, 50.0)
    memory, stuck = MemorySink(), _StuckSink(release)
    pipeline = Pipeline(source, _processor(segmenter), [recording, memory, stuck], max_frames=20)
    try:
        pipeline.start()
        assert pipeline.wait(HANG_GUARD) and stuck.writing.wait(HANG_GUARD)
        pipeline.stop()  # returns although the model and one output never finish
        model = [t for t in threading.enumerate() if t.name == "vbg-inference"]
        assert model and model[0].is_alive() and segmenter.calls == 1
        # The others were finalised with every frame; the stuck one's queue was let go.
        assert recording.closed and memory.closed and not stuck.closed
        assert len(decode_video(tmp_path / "rec.mp4")) == 20 and len(memory.frames) == 20
        assert pipeline.stats.to_dict()["dropped"]["stuck"] == 19  # one is inside its write
    finally:
        release.set()
    model[0].join(HANG_GUARD)
    assert not model[0].is_alive()  # released, it ends without making anything more
