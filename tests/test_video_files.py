"""Video files as users share them: ``vbg process`` keeps a video's frame count, timestamps
(variable frame rate too) and audio track and writes H.264; recordings are H.264 and a killed
``.mkv`` recording still plays; a missing or unreadable input is called that.

The inputs are made here with PyAV from the fixture clip's frames (24 frames, 320x180) and a
generated tone, and every output is opened again with PyAV. The model is the stand-in
segmenter, so nothing depends on the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import closing
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from conftest import StandInSegmenter, fixture_path
from vbg.commands import frame_path
from vbg.commands.cli import main
from vbg.errors import SinkError
from vbg.outputs.sinks import RecordingSink
from vbg.outputs.video import CLUSTER_MS, LIVE_THREADS, VideoWriter

FRAMES = 24
TIME_BASE = Fraction(1, 90000)
CFR = [3000] * FRAMES  # 30 fps
VFR = [3000, 1500, 4500, 3003, 6000, 2000] * (FRAMES // 6)  # a phone's irregular frame times


@pytest.fixture(autouse=True)
def _stand_in_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_path, "load_model", lambda config, device=None: StandInSegmenter())


def _clip_frames(count: int = FRAMES) -> list[np.ndarray]:
    """The first ``count`` frames of the fixture clip (320x180 BGR), decoded with PyAV."""
    with av.open(str(fixture_path("clip.mp4"))) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                return frames
    raise AssertionError("the fixture clip is shorter than expected")


def make_video(
    path: Path,
    durations: list[int],
    *,
    start: int = 0,
    audio: str | None = "aac",
    sample_rate: int = 44100,
    frames: list[np.ndarray] | None = None,
) -> None:
    """A video as a camera or phone writes it: H.264 at the given frame durations (in 1/90000 s,
    from pts ``start``), and a 440 Hz stereo tone as long as the video in codec ``audio``."""
    pictures = frames if frames is not None else _clip_frames(len(durations))
    with av.open(str(path), "w") as container:
        video: Any = container.add_stream("libx264", rate=30)
        video.width, video.height = pictures[0].shape[1], pictures[0].shape[0]
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = TIME_BASE
        sound: Any = (
            container.add_stream(audio, rate=sample_rate, layout="stereo") if audio else None
        )
        pts = start
        for picture, duration in zip(pictures, durations, strict=True):
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            frame.pts, frame.time_base = pts, TIME_BASE
            container.mux(video.encode(frame))
            pts += duration
        container.mux(video.encode(None))
        if sound is None:
            return
        samples = round((pts - start) * TIME_BASE * sample_rate)
        tone = 0.3 * np.sin(np.arange(samples) * 2 * np.pi * 440 / sample_rate)
        planes = np.repeat(tone[None, :].astype(np.float32), 2, axis=0)
        for offset in range(0, samples, 1024):
            chunk = np.ascontiguousarray(planes[:, offset : offset + 1024])
            block = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            block.sample_rate, block.pts = sample_rate, offset
            block.time_base = Fraction(1, sample_rate)
            container.mux(sound.encode(block))
        container.mux(sound.encode(None))


def _video_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def _audio(path: Path) -> tuple[str, int, float, bytes]:
    """(codec, sample rate, seconds of decoded sound, the packets' bytes) of the audio track."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        codec, rate = stream.codec_context.name, stream.codec_context.sample_rate
        data = b"".join(bytes(packet) for packet in container.demux(stream) if packet.size)
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return codec, rate, samples / rate, data


def _stream_info(path: Path) -> tuple[str, str, Fraction, int]:
    """(codec, pixel format, time base, audio tracks) of the video track."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return (
            video.codec_context.name,
            video.codec_context.pix_fmt,
            video.time_base,
            len(container.streams.audio),
        )


def _process(*argv: str) -> int:
    return main(["process", *argv, "--background", "color:#00B140", "--device", "cpu"])


@pytest.mark.parametrize(
    ("name", "durations", "start", "audio", "output", "audio_out"),
    [
        ("phone.mp4", CFR, 0, "aac", ".mp4", "aac"),  # AAC copied into MP4
        ("phone.mp4", CFR, 0, "aac", ".mkv", "aac"),
        ("vfr.mp4", VFR, 9000, "aac", ".mp4", "aac"),  # variable frame rate, starting at 0.1 s
        ("vfr.mp4", VFR, 9000, "aac", ".mkv", "aac"),
        ("camera.mov", VFR, 0, "pcm_s16le", ".mp4", "aac"),  # PCM: transcoded to AAC for MP4
        ("camera.mov", VFR, 0, "pcm_s16le", ".mkv", "pcm_s16le"),  # Matroska takes PCM
    ],
)
def test_process_keeps_frames_timestamps_and_audio(
    tmp_path: Path,
    name: str,
    durations: list[int],
    start: int,
    audio: str,
    output: str,
    audio_out: str,
) -> None:
    source, out, mask = tmp_path / name, tmp_path / f"out{output}", tmp_path / f"mask{output}"
    make_video(source, durations, start=start, audio=audio)
    assert _process(str(source), "-o", str(out), "--save-mask", str(mask)) == 0

    codec, pix_fmt, time_base, tracks = _stream_info(out)
    assert (codec, pix_fmt, tracks) == ("h264", "yuv420p", 1)
    times_in, times_out = _video_times(source), _video_times(out)
    assert len(times_in) == len(times_out) == FRAMES  # every frame, none added
    tick = max(float(time_base), float(TIME_BASE))
    assert times_in[0] == pytest.approx(start * TIME_BASE)
    for t_in, t_out in zip(times_in, times_out, strict=True):
        assert abs(t_in - t_out) <= tick / 2 + 1e-9, (times_in, times_out)

    codec_in, rate_in, seconds_in, data_in = _audio(source)
    codec_out, rate_out, seconds_out, data_out = _audio(out)
    assert (codec_out, rate_out) == (audio_out, rate_in)
    assert seconds_out == pytest.approx(seconds_in, abs=0.1)
    if audio_out == codec_in:
        assert data_out == data_in  # copied as it was, not encoded again

    # The mask video has the same frames at the same times, and no sound.
    assert _stream_info(mask)[::3] == ("h264", 0)
    assert _video_times(mask) == times_out


def _rotate_90_clockwise(path: Path) -> None:
    """Write a phone's display matrix into an MP4's video track header (tkhd): shown turned 90
    degrees clockwise, as a phone held upright records."""
    data = bytearray(path.read_bytes())
    header = data.index(b"tkhd", data.index(b"moov"))
    assert data[header + 4] == 0  # version 0: 32-bit times
    matrix = header + 4 + 4 + 20 + 8 + 8  # version/flags, times/ids/duration, reserved, layer...
    values = [0, 0x00010000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000]
    data[matrix : matrix + 36] = b"".join(v.to_bytes(4, "big") for v in values)
    path.write_bytes(data)


def test_process_shows_a_phone_video_upright(tmp_path: Path) -> None:
    frames = [np.zeros((90, 160, 3), np.uint8) for _ in range(6)]
    for frame in frames:
        frame[:20, :20] = 255  # a white corner at the stored picture's top left
    source, out = tmp_path / "portrait.mp4", tmp_path / "out.mp4"
    make_video(source, CFR[:6], audio=None, frames=frames)
    _rotate_90_clockwise(source)
    assert main(["process", str(source), "-o", str(out), "--background", "none"]) == 0
    with av.open(str(out)) as container:
        pictures = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(pictures) == 6 and pictures[0].shape == (160, 90, 3)  # upright: tall
    for picture in pictures:  # turned clockwise, the top left corner is at the top right
        assert picture[:20, -20:].mean() > 200 and picture[:20, :20].mean() < 50


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_recording_is_h264_with_every_frame(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rec{suffix}"
    frames = _clip_frames(20)
    with RecordingSink(path, 320, 180, 30.0) as sink:
        for frame in frames:
            sink.write(frame)
    assert sink.frames_written == 20
    codec, pix_fmt, _, tracks = _stream_info(path)
    assert (codec, pix_fmt, tracks) == ("h264", "yuv420p", 0)
    times = _video_times(path)
    assert times == pytest.approx([i / 30 for i in range(20)], abs=0.0006)
    if suffix == ".mp4":  # the index first, so that a browser plays it while it downloads
        data = path.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")


def test_an_odd_size_is_padded_to_an_even_one(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with closing(VideoWriter(path, 161, 91, rate=25)) as writer:
        for _ in range(3):
            writer.write(np.full((91, 161, 3), 128, np.uint8))
    with av.open(str(path)) as container:
        pictures = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(pictures) == 3 and pictures[0].shape == (92, 162, 3)
    assert abs(float(pictures[0].mean()) - 128) < 3  # the added row and column repeat the edge
    with pytest.raises(SinkError, match="a frame of shape"):
        VideoWriter(tmp_path / "x.mkv", 64, 48, rate=30).write(np.zeros((48, 60, 3), np.uint8))


KILL_AFTER = 75  # frames written before the writer kills itself: 2.5 s at 30 fps
_KILLED_RECORDER = f"""
import os, signal, sys
from pathlib import Path
import numpy as np
from vbg.outputs.sinks import RecordingSink
sink = RecordingSink(Path(sys.argv[1]), 320, 180, 30.0)
for i in range({KILL_AFTER}):
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[:, : 4 * i] = 255  # a white bar that grows: each frame different
    sink.write(frame)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_mkv_recording_keeps_all_but_its_last_half_second(tmp_path: Path) -> None:
    out = tmp_path / "killed.mkv"
    killed = subprocess.run([sys.executable, "-c", _KILLED_RECORDER, str(out)], timeout=120)
    assert killed.returncode == -signal.SIGKILL  # no chance to finalise anything
    with av.open(str(out)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    # Lost: the cluster still open (at most CLUSTER_MS) and the frames inside x264 (no B-frames
    # at the live preset; one per extra thread).
    lost = KILL_AFTER - len(frames)
    assert 0 <= lost <= CLUSTER_MS * 30 // 1000 + 1 + LIVE_THREADS + 1
    for i, frame in enumerate(frames[2:], start=2):  # the first frames, in order
        assert frame[:, : 4 * i - 4].mean() > 240 and frame[:, 4 * i + 4 :].mean() < 15


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 1) -> str:
    assert main(argv) == code  # 1: what the command names is missing or bad; 2: a wrong name
    err = capsys.readouterr().err.strip()
    assert err.startswith("vbg: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_process_says_that_a_missing_input_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, output in (("nonexist.jpg", "o.png"), ("nonexist.mp4", "o.mp4"), ("x", "o.png")):
        missing = tmp_path / name
        err = _one_line_error(capsys, ["process", str(missing), "-o", str(tmp_path / output)])
        assert f"Input '{missing}' does not exist" in err and output not in err


def _unreadable_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Inputs vbg cannot read, with the words its error must use."""
    junk_text = folder / "notes.jpg"
    junk_text.write_text("not a picture")
    junk_video = folder / "junk.mp4"
    junk_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    whole = folder / "whole.mp4"
    make_video(whole, CFR[:6], audio=None)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # no index: moov last
    sound = folder / "sound.m4a"
    with av.open(str(sound), "w") as container:
        stream: Any = container.add_stream("aac", rate=44100, layout="mono")
        block = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        block.sample_rate, block.pts = 44100, 0
        container.mux(stream.encode(block))
        container.mux(stream.encode(None))
    return {
        "text as a photo": (junk_text, "cannot be read"),
        "junk as a video": (junk_video, "cannot be read"),
        "a video cut in half": (truncated, "cannot be read"),
        "sound only": (sound, "has no video track"),
        "a folder": (folder / "sub", "is a folder"),
    }


def test_process_says_that_an_unreadable_input_is_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(config: object, device: object = None) -> None:
        raise AssertionError("the model is loaded only once the input and output are known good")

    monkeypatch.setattr(frame_path, "load_model", no_model)
    (tmp_path / "sub").mkdir()
    for kind, (path, words) in _unreadable_inputs(tmp_path).items():
        for output in ("o.png", "o.mp4"):
            err = _one_line_error(capsys, ["process", str(path), "-o", str(tmp_path / output)])
            assert f"Input '{path}' {words}" in err and output not in err, (kind, err)
    # A readable video with a picture's name for the output: said before the model loads.
    video = tmp_path / "good.mp4"
    make_video(video, CFR[:6], audio=None)
    for output in ("o.png", "o.avi", "o"):
        err = _one_line_error(capsys, ["process", str(video), "-o", str(tmp_path / output)], 2)
        assert f"'{tmp_path / output}' is not a video file name" in err, err
    err = _one_line_error(capsys, ["process", str(video), "-o", str(video)], 2)
    assert "is the input" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may read any file")
def test_process_says_that_a_file_it_may_not_read_is_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("locked.mp4", "locked.png"):
        path = tmp_path / name
        path.write_bytes(b"")
        path.chmod(0)
        err = _one_line_error(capsys, ["process", str(path), "-o", str(tmp_path / "o.mkv")])
        assert f"Input '{path}' cannot be read (Permission denied)" in err, err
