"""Outputs lose nothing (issue 13): an output is never written over an input (also through
links), an existing file is replaced only with --overwrite, two runs never write one file, a
full disk stops the recording or ``vbg process`` with one line and a file that plays with the
frames vbg says it holds, output paths are checked before the camera opens, and sizes no output
takes are called that.

The full disk is real: a subprocess with a file-size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored,
so that a write past it fails with EFBIG) and, where this machine lets a test mount one, a
small tmpfs. Two runs are two processes with a real lock; the model is the stand-in segmenter.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from conftest import StandInSegmenter, fixture_path
from vbg.commands import frame_path
from vbg.commands.cli import main
from vbg.errors import ConfigError, SinkError
from vbg.outputs.files import write_file
from vbg.outputs.sinks import RecordingSink
from vbg.sources.capture import MAX_SIZE, open_source
from vbg.sources.video_file import VideoFileReader

TESTS = Path(__file__).resolve().parent
FAST = ["--device", "cpu", "--background", "none"]  # the camera's picture: a realistic bitrate
RUN = ["--no-preview", "--no-virtual-cam", *FAST]


@pytest.fixture(autouse=True)
def _stand_in_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_path, "load_model", lambda config, device=None: StandInSegmenter())


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("vbg: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _frames_in(path: Path) -> int:
    """The frames PyAV decodes from ``path`` (0 when it does not open)."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.FFmpegError:
        return 0


# -- 1. an output is never its own input ----------------------------------------------------


def test_an_output_is_never_its_input_also_through_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "a.mp4"
    clip.write_bytes(fixture_path("clip.mp4").read_bytes())
    original = clip.read_bytes()
    (tmp_path / "sym.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    picture = tmp_path / "room.png"
    cv2.imwrite(str(picture), np.full((90, 160, 3), 90, np.uint8))
    for name in ("a.mp4", "sym.mp4", "hard.mp4"):
        out = str(tmp_path / name)
        err = _one_line(capsys, ["process", str(clip), "-o", out, *FAST], 2)
        assert f"'{out}' is the input" in err
        err = _one_line(
            capsys, ["process", str(clip), "-o", str(tmp_path / "o.mkv"), "--save-mask", out], 2
        )
        assert f"'{out}' is the input" in err
        err = _one_line(capsys, ["--source", str(clip), "--record", out, *RUN], 2)
        assert f"The recording '{out}' is the source" in err
        err = _one_line(capsys, ["--source", str(clip), "--stats", out, *RUN], 2)
        assert f"The statistics file '{out}' is the source" in err
        err = _one_line(
            capsys, [*RUN, "--source", str(picture), "--background", str(clip), "--record", out], 2
        )
        assert f"The recording '{out}' is the background" in err
    err = _one_line(capsys, ["--source", str(picture), "--record", str(tmp_path / "x.mkv"),
                             "--stats", str(tmp_path / "x.mkv"), *RUN], 2)  # fmt: skip
    assert "The recording and the statistics file both name" in err
    assert clip.read_bytes() == original and not (tmp_path / "o.mkv").exists()


# -- 6. no silent overwrite, no two writers -------------------------------------------------


def test_an_existing_output_is_replaced_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = next(fixture_path("photos", "images").iterdir())
    out, record, stats = tmp_path / "out.png", tmp_path / "rec.mkv", tmp_path / "stats.json"
    for path in (out, record, stats):
        path.write_bytes(b"the user's own file")
    err = _one_line(capsys, ["process", str(photo), "-o", str(out), *FAST], 2)
    assert f"Will not replace image '{out}': it exists; add --overwrite" in err
    source = ["--source", str(photo), "--max-frames", "3", *RUN]
    err = _one_line(capsys, [*source, "--record", str(record)], 2)
    assert f"Will not replace video '{record}': it exists; add --overwrite" in err
    err = _one_line(capsys, [*source, "--stats", str(stats)], 2)
    assert f"Will not replace statistics file '{stats}': it exists; add --overwrite" in err
    assert all(p.read_bytes() == b"the user's own file" for p in (out, record, stats))
    assert main(["process", str(photo), "-o", str(out), "--overwrite", *FAST]) == 0
    assert main([*source, "--record", str(record), "--stats", str(stats), "--overwrite"]) == 0
    assert cv2.imread(str(out)) is not None and _frames_in(record) == 3
    assert json.loads(stats.read_text())["record_frames"] == 3


_WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from vbg.outputs.sinks import RecordingSink
sink = RecordingSink(Path(sys.argv[1]), 320, 180, 30.0)
sink.write(np.zeros((180, 320, 3), np.uint8))
print("writing", flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(os.name != "posix", reason="the lock is flock, POSIX only (see files.py)")
def test_a_file_another_run_writes_is_refused_even_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "call.mkv"
    photo = str(next(fixture_path("photos", "images").iterdir()))
    argv = ["--source", photo, "--max-frames", "3", "--record", str(path), *RUN]
    command = [sys.executable, "-c", _WRITER, str(path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            size = path.stat().st_size
            err = _one_line(capsys, [*argv, "--overwrite"], 1)
            assert f"Cannot write video '{path}': another vbg run is writing it" in err
            with pytest.raises(SinkError, match="another vbg run is writing it"):
                RecordingSink(path, 320, 180, 30.0, overwrite=True)
            assert path.stat().st_size >= size  # the first run's file is untouched
        finally:
            writer.send_signal(signal.SIGKILL)  # the kernel releases its lock: none left stale
    assert main([*argv, "--overwrite"]) == 0 and _frames_in(path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.mkv"]


def test_the_keys_files_never_replace_one_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vbg.commands import run

    monkeypatch.setattr(run.time, "strftime", lambda form: "20260101-120000")  # one second
    first = run.timestamped(tmp_path, "vbg", ".mkv")
    first.write_bytes(b"an earlier recording")
    second = run.timestamped(tmp_path, "vbg", ".mkv")
    assert second.name == "vbg-20260101-120000-1.mkv"
    with pytest.raises(ConfigError, match="add --overwrite"):
        RecordingSink(first, 64, 48, 30.0, vital=False)
    with pytest.raises(ConfigError, match="add --overwrite"):
        write_file(first, b"a snapshot", "snapshot", overwrite=False)
    assert first.read_bytes() == b"an earlier recording"


# -- 2. a full disk -------------------------------------------------------------------------

_LIMITED = """
import json, resource, signal, sys
sys.path.insert(0, sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from conftest import StandInSegmenter
from vbg.commands import frame_path
from vbg.commands.cli import main
from vbg.outputs.video import VideoWriter
frame_path.load_model = lambda config, device=None: StandInSegmenter()
room = VideoWriter._room
for sudden, argv in json.loads(sys.argv[3]):
    # sudden: the disk fills at once, the room left is not known in advance
    VideoWriter._room = (lambda self: None) if sudden else room
    code = main(["-q", *argv])
    print(f"exit code {code}", file=sys.stderr, flush=True)
"""
LIMIT = 150_000  # bytes: about 45 frames of the clip
FULL_DISK_CASES = [  # (case, sudden, suffix)
    ("run", False, ".mkv"),
    ("run", False, ".mp4"),
    ("process", False, ".mkv"),
    ("process", False, ".mp4"),
    ("run", True, ".mkv"),
    ("run", True, ".mp4"),
]


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool, str], Any]:
    """Every case of FULL_DISK_CASES, run in one process that may not write a file over LIMIT
    bytes (one process: each start of Python with torch takes seconds). For each case: (exit
    code, the error line, the output, its stats file)."""
    folder = tmp_path_factory.mktemp("full-disk")
    clip = str(fixture_path("clip.mp4"))
    long = folder / "long.mkv"  # for vbg process: the clip three times, more than LIMIT takes
    with av.open(clip) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    with av.open(str(long), "w") as container:
        stream: Any = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for picture in frames * 3:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="bgr24")))
        container.mux(stream.encode(None))
    runs, outputs = [], []
    for n, (case, sudden, suffix) in enumerate(FULL_DISK_CASES):
        out, stats = folder / f"out{n}{suffix}", folder / f"stats{n}.json"
        if case == "run":
            argv = ["--source", clip, "--loop", "--max-frames", "600", "--record", str(out),
                    "--stats", str(stats), *RUN]  # fmt: skip
        else:
            argv = ["process", str(long), "-o", str(out), *FAST]
        runs.append([sudden, argv])
        outputs.append((out, stats))
    command = [sys.executable, "-c", _LIMITED, str(TESTS), str(LIMIT), json.dumps(runs)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    reports = re.findall(r"((?:.*\n)*?)exit code (\d+)\n", result.stderr)
    assert len(reports) == len(FULL_DISK_CASES), result.stderr
    found = {}
    for case, (said, code), (out, stats) in zip(FULL_DISK_CASES, reports, outputs, strict=True):
        lines = [line for line in said.splitlines() if line.startswith("vbg: ")]
        assert len(lines) == 1 and lines[0].startswith("vbg: error: "), said  # one line
        found[case] = (int(code), lines[0], out, stats)
    return found


def _frames_said(line: str) -> int:
    return int(re.search(r"with (?:the first )?(\d+) frames", line).group(1))  # type: ignore[union-attr]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
@pytest.mark.parametrize("case", ["run", "process"])
def test_a_full_disk_ends_the_output_playable_and_says_so(
    full_disk: dict[tuple[str, bool, str], Any], case: str, suffix: str
) -> None:
    """A recording (of up to 600 frames) or vbg process (of 225): stopped where the room ends,
    finished, exit code 1, and the frames said are the frames in the file (and in the stats)."""
    code, line, out, stats = full_disk[case, False, suffix]
    assert code == 1
    assert f"Stopped writing video '{out}': the file-size limit (ulimit -f) is reached" in line
    said = _frames_said(line)
    assert 10 < said < (600 if case == "run" else 225) and _frames_in(out) == said
    if case == "run":
        assert json.loads(stats.read_text())["record_frames"] == said


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_write_that_fails_at_once_is_said_with_what_the_file_holds(
    full_disk: dict[tuple[str, bool, str], Any], suffix: str
) -> None:
    code, line, out, stats = full_disk["run", True, suffix]
    assert code == 1
    assert f"Video '{out}': writing it failed (File too large)" in line
    recorded = json.loads(stats.read_text())["record_frames"]
    if suffix == ".mkv":  # up to its last complete cluster
        assert 10 < _frames_said(line) == recorded == _frames_in(out)
    else:  # an MP4 needs its index at the end, which no longer fits: said, not hidden
        assert "it holds no frame a player can show" in line
        assert recorded == 0 == _frames_in(out)


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_a_full_tmpfs_ends_the_recording_playable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _tmpfs(tmp_path / "disk", "size=256k") as disk:
        out, stats = disk / "call.mkv", tmp_path / "stats.json"
        clip = str(fixture_path("clip.mp4"))
        argv = ["--source", clip, "--loop", "--max-frames", "900", "--record", str(out)]
        line = _one_line(capsys, ["-q", *argv, "--stats", str(stats), *RUN], 1)
        assert f"Stopped writing video '{out}': the disk is nearly full" in line
        said = _frames_said(line)
        assert 10 < said == json.loads(stats.read_text())["record_frames"] == _frames_in(out)


_WRITE_FILE = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
from vbg.errors import SinkError
from vbg.outputs.files import write_file
try:
    write_file(Path(sys.argv[1]), b"x" * 5000, "statistics file", overwrite=True)
except SinkError as exc:
    print(exc)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_failed_small_write_keeps_the_old_file_and_leaves_no_half(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text('{"frames_out": 12}\n')
    result = subprocess.run(
        [sys.executable, "-c", _WRITE_FILE, str(stats)], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "Writing statistics file failed (File too large)."
    assert stats.read_text() == '{"frames_out": 12}\n' and list(tmp_path.iterdir()) == [stats]


# -- 7. paths checked before the camera opens -----------------------------------------------


def test_output_paths_are_checked_before_the_camera_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent_camera = ["--source", "7", *RUN]  # it would fail, but only once opened
    (tmp_path / "folder.mkv").mkdir()
    cases = [
        (
            ["--stats", str(tmp_path / "no" / "s.json")],
            f"folder '{tmp_path / 'no'}' does not exist",
        ),
        (["--stats", str(tmp_path)], "it is a folder"),
        (
            ["--record", str(tmp_path / "no" / "r.mkv")],
            f"folder '{tmp_path / 'no'}' does not exist",
        ),
        (["--record", str(tmp_path / "folder.mkv")], "it is a folder"),
    ]
    for flags, words in cases:
        err = _one_line(capsys, [*absent_camera, *flags], 1)
        assert words in err and "Camera" not in err, err
    err = _one_line(capsys, ["--source", "7", "--record-dir", str(tmp_path / "no"), *FAST], 1)
    assert "(the r and s keys): folder" in err and "does not exist" in err


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_a_read_only_destination_is_named_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = str(next(fixture_path("photos", "images").iterdir()))
    with _tmpfs(tmp_path / "ro", "size=64k,ro") as read_only:
        for argv in (
            ["--source", "7", "--stats", str(read_only / "s.json"), *RUN],
            ["--source", "7", "--record", str(read_only / "r.mkv"), *RUN],
            ["process", photo, "-o", str(read_only / "o.png"), *FAST],
            ["process", str(fixture_path("clip.mp4")), "-o", str(read_only / "o.mp4"), *FAST],
        ):
            err = _one_line(capsys, argv, 1)
            assert f"folder '{read_only}' does not take new files (Read-only file system)" in err


# -- 9. sizes and rates no output takes -------------------------------------------------------


def test_sizes_no_output_takes_are_said_or_scaled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    one = tmp_path / "one.png"
    cv2.imwrite(str(one), np.zeros((1, 1, 3), np.uint8))
    err = _one_line(capsys, ["--source", str(one), "--record", str(tmp_path / "r.mkv"), *RUN], 1)
    assert f"Source '{one}' is 1x1 pixels, too small: vbg needs at least 16x16" in err
    assert not (tmp_path / "r.mkv").exists()
    err = _one_line(capsys, ["--source", str(fixture_path("clip.mp4")), "--fps", "0.001", *RUN], 2)
    assert "--fps must be 0 (the source's own) or between 1 and 240, not 0.001" in err


def test_a_source_wider_than_4k_is_scaled_down_with_a_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Wider than 4K: scaled down to fit 3840 (even numbers), with one line; cheap to make when
    # only 64 pixels high.
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.full((64, 4000, 3), 200, np.uint8))
    video = tmp_path / "wide.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 4000, 64, "yuv420p"
        for _ in range(3):
            picture = av.VideoFrame.from_ndarray(np.full((64, 4000, 3), 200, np.uint8), "bgr24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    caplog.set_level("WARNING", logger="vbg")
    for opened in (
        open_source(str(wide), realtime=False),
        open_source(str(video), realtime=False),
        VideoFileReader(video),
    ):
        with opened as source:
            frame = source.read()
            assert (source.width, source.height) == (MAX_SIZE[0], 60)
            assert frame is not None and frame.shape == (60, 3840, 3)
    notices = [r.getMessage() for r in caplog.records if "scaled down to 3840x60" in r.getMessage()]
    assert len(notices) == 3 and "at most 3840x2160" in notices[0]


def test_a_picture_too_large_to_read_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # a small picture over the limit
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((120, 160, 3), np.uint8))
    err = _one_line(capsys, ["--source", str(big), "--record", str(tmp_path / "r.mkv"), *RUN], 1)
    assert f"Source image '{big}' is too large to read safely" in err
    err = _one_line(capsys, ["process", str(big), "-o", str(tmp_path / "o.png"), *FAST], 1)
    assert f"Input image '{big}' is too large to read safely" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_device_a_pipe_or_the_config_file_is_never_written_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = next(fixture_path("photos", "images").iterdir())
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # opening it to look would wait for a writer for ever
    source = ["--source", str(photo), "--max-frames", "3", *RUN, "--overwrite"]
    err = _one_line(capsys, [*source, "--stats", str(pipe)], 2)
    assert "it is not a regular file (a device or a pipe)" in err
    assert _one_line(capsys, [*source, "--stats", os.devnull], 2)
    config = tmp_path / "my.toml"
    config.write_text(f'stats = "{config}"\n')
    err = _one_line(capsys, [*source, "--config", str(config)], 2)
    assert f"The statistics file '{config}' is the config file" in err
    assert config.read_text() == f'stats = "{config}"\n'


def test_a_path_with_a_line_break_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "two\nlines.png"
    err = _one_line(capsys, ["process", str(missing), "-o", str(tmp_path / "o.png")], 1)
    assert "two\\nlines.png" in err
