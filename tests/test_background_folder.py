"""A background folder: its unreadable pictures are skipped wherever they are, each named once;
files that are no pictures are ignored without a word; a folder with nothing to show is one clear
error naming the folder (exit 1)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.commands.cli import main
from vbg.compositing.backgrounds import FolderBackground, open_background
from vbg.errors import BackgroundError

FRAME = np.zeros((40, 60, 3), np.uint8)


def _picture(path: Path, value: int) -> None:
    assert cv2.imwrite(str(path), np.full((20, 30, 3), value, np.uint8))


def _shown(folder: FolderBackground) -> int:
    """The grey level of the picture shown (each test picture is one plain grey)."""
    rendered = folder.render(FRAME, 0.0)
    assert rendered is not None and rendered.shape == FRAME.shape
    return int(rendered[0, 0, 0])


@pytest.fixture
def said(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """What vbg logs from here on (warnings and infos), also after a test that ran main()."""
    monkeypatch.setattr(logging.getLogger("vbg"), "propagate", True)
    caplog.set_level(logging.INFO, logger="vbg")
    return caplog


def test_a_broken_first_picture_is_skipped_with_one_line(
    tmp_path: Path, said: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"broken")
    _picture(tmp_path / "b.png", 60)
    _picture(tmp_path / "c.png", 200)
    folder = open_background(str(tmp_path))
    assert isinstance(folder, FolderBackground)
    assert folder.name == "b.png" and _shown(folder) == 60
    [line] = said.messages
    assert line.startswith(f"Background folder '{tmp_path}': skipped a.jpg: ")
    assert "not an image file" in line and "\n" not in line
    # Round the folder both ways: the broken picture is not tried (nor named) again.
    assert folder.step(1) is None and _shown(folder) == 200
    assert folder.step(1) is None and _shown(folder) == 60
    assert folder.step(-1) is None and _shown(folder) == 200
    assert folder.step(-1) is None and _shown(folder) == 60
    assert len(said.messages) == 1


def test_all_but_one_broken_and_stepping_stays_on_it(
    tmp_path: Path, said: pytest.LogCaptureFixture
) -> None:
    for name in ("a.jpg", "b.png", "d.webp"):
        (tmp_path / name).write_bytes(b"\x89PNG broken")
    _picture(tmp_path / "c.png", 120)
    folder = open_background(str(tmp_path))
    assert isinstance(folder, FolderBackground) and _shown(folder) == 120
    assert [line.split(": ")[1] for line in said.messages] == ["skipped a.jpg", "skipped b.png"]
    notice = folder.step(1)  # d.webp is found broken on the way round, back to c.png
    assert notice is not None and "d.webp" in notice and "\n" not in notice
    assert folder.name == "c.png" and _shown(folder) == 120
    assert folder.step(-1) is None and folder.step(1) is None and folder.name == "c.png"


def test_a_picture_that_breaks_while_shown_stays_shown(tmp_path: Path) -> None:
    _picture(tmp_path / "a.png", 30)
    _picture(tmp_path / "b.png", 90)
    folder = open_background(str(tmp_path))
    assert isinstance(folder, FolderBackground)
    (tmp_path / "b.png").write_bytes(b"gone bad")  # say, a file being replaced
    notice = folder.step(1)
    assert notice is not None and "b.png" in notice
    assert folder.name == "a.png" and _shown(folder) == 30


def test_only_broken_pictures_is_one_error_naming_the_folder(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.png", "c.png", "d.png", "e.tif"):
        (tmp_path / name).write_bytes(b"broken")
    with pytest.raises(BackgroundError) as raised:
        open_background(str(tmp_path))
    message = str(raised.value)
    assert message.startswith(
        f"Background folder '{tmp_path}' has no picture vbg can read "
        "(a.jpg, b.png, c.png and 2 more). Image "
    )
    assert message.endswith("Use a JPEG or PNG file.") and "\n" not in message


def test_files_that_are_no_pictures_are_ignored_without_a_word(
    tmp_path: Path, said: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "clip.mp4").write_bytes(b"a video is no folder picture")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "sub.d").mkdir()
    _picture(tmp_path / "only.png", 77)
    folder = open_background(str(tmp_path))
    assert isinstance(folder, FolderBackground) and folder.paths == [tmp_path / "only.png"]
    assert folder.step(1) is None and folder.step(-1) is None and _shown(folder) == 77
    assert said.messages == []


def test_an_empty_folder_or_one_without_pictures_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackgroundError, match=f"Background folder '{empty}' has no images"):
        open_background(str(empty))
    (empty / "readme.txt").write_text("pictures go here")
    with pytest.raises(BackgroundError, match=f"Background folder '{empty}' has no images"):
        open_background(str(empty))


def _run(tmp_path: Path, files: dict[str, bytes], weights: Path) -> tuple[int, Path]:
    """``vbg run`` for 2 frames of the fixture clip in front of a folder holding ``files``."""
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    code = main([
        "--source", str(fixture_path("clip.mp4")), "--max-frames", "2", "--no-preview",
        "--no-virtual-cam", "--record", str(tmp_path / "out.mkv"), "--background", str(folder),
        "--model", "lraspp_mobilenet_v3_large", "--weights", str(weights), "--device", "cpu",
    ])  # fmt: skip
    return code, folder


def test_vbg_run_with_a_broken_first_picture_runs_and_says_so(
    tmp_path: Path, fast_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pictures = {p.name: p.read_bytes() for p in fixture_path("backgrounds").iterdir()}
    code, folder = _run(tmp_path, {"0-broken.jpg": b"broken", **pictures}, fast_weights)
    assert code == 0
    err = capsys.readouterr().err
    [skipped] = [line for line in err.splitlines() if "skipped" in line]
    assert skipped.startswith(f"vbg: Background folder '{folder}': skipped 0-broken.jpg: ")
    assert "done: 2 frames out" in err and "error" not in err


def test_vbg_run_with_no_readable_picture_stops_with_one_line(
    tmp_path: Path, fast_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, folder = _run(tmp_path, {"a.jpg": b"broken", "notes.txt": b"ignored"}, fast_weights)
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vbg: error: Background folder '{folder}' has no picture vbg can read")
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out.mkv").exists()  # stopped before any output opened
