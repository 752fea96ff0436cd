"""The preview window for real: vbg under Xvfb, keys pressed with xdotool, screenshots checked;
and the window as an output (a Sink) that keeps the newest frame for the main thread."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.errors import SinkError
from vbg.outputs.preview import KEYS, PreviewWindow, action_for_key, draw_overlay

TOOLS = ("Xvfb", "xdotool", "import")
# Seconds to wait for the window to show what a key asked for. Not a speed requirement: only so
# that a preview that never reacts fails the test instead of hanging the run.
HANG_GUARD = 60.0


def test_overlay_draws_status_and_help_on_a_copy() -> None:
    frame = np.full((360, 640, 3), 200, np.uint8)
    plain = draw_overlay(frame, ["out 30.0 fps  mask 3.0 fps  fcn_resnet50 on cpu"])
    helped = draw_overlay(frame, ["status"], show_help=True)
    assert (frame == 200).all()  # the frame itself is untouched
    changed_plain = (plain != frame).any(axis=2)
    changed_help = (helped != frame).any(axis=2)
    assert changed_plain[:40].any() and not changed_plain[100:].any()
    assert changed_help[100:300].sum() > 20 * changed_plain[100:].sum() + 1000


def test_every_key_in_the_table_maps_to_its_action() -> None:
    for keys, _, action in KEYS:
        for key in keys.split(" / "):
            if len(key) == 1:
                assert action_for_key(ord(key)) == action
    assert action_for_key(27) == "quit" and action_for_key(65363) == "next"
    assert action_for_key(-1) is None and action_for_key(ord("z")) is None


@pytest.mark.skipif(sys.platform != "linux", reason="elsewhere there is always a desktop")
def test_no_display_says_to_turn_the_window_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="No display.*--no-preview"):
        PreviewWindow()


@pytest.fixture
def display() -> Iterator[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: xvfb xdotool imagemagick)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


def _screenshot(display: str, window: str) -> np.ndarray:
    png = subprocess.run(
        ["import", "-window", window, "png:-"],
        capture_output=True,
        check=True,
        timeout=HANG_GUARD,
        env={**os.environ, "DISPLAY": display},
    ).stdout
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def _share(image: np.ndarray, bgr: tuple[int, int, int]) -> float:
    """Share of pixels within a small distance of colour ``bgr`` in the lower two thirds of a
    screenshot (the status overlay is at the top)."""
    lower = image[image.shape[0] // 3 :]
    return float((np.abs(lower.astype(int) - bgr).sum(axis=2) < 30).mean())


def _within(check: Callable[[], bool], seconds: float) -> bool:
    """Whether ``check`` comes true within ``seconds`` (looked at every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _until(check: Callable[[], bool], what: str) -> None:
    if not _within(check, HANG_GUARD):
        raise AssertionError(f"the preview never showed {what}")


def _halves(image: np.ndarray) -> float:
    """How much lighter the right half of a screenshot's lower two thirds is than its left."""
    lower = cv2.cvtColor(image[image.shape[0] // 3 :], cv2.COLOR_BGR2GRAY).astype(float)
    middle = lower.shape[1] // 2
    return float(lower[:, middle:].mean() - lower[:, :middle].mean())


def _sharpness(image: np.ndarray) -> float:
    """Detail in the lower half of a screenshot (the overlay is at the top)."""
    grey = cv2.cvtColor(image[image.shape[0] // 2 :], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _looks_like(image: np.ndarray, other: np.ndarray) -> float:
    """Correlation of the lower two thirds of two screenshots (grey, small)."""

    def small(x: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(x[x.shape[0] // 3 :], cv2.COLOR_BGR2GRAY)
        return cv2.resize(grey, (80, 30), interpolation=cv2.INTER_AREA).astype(float).ravel()

    return float(np.corrcoef(small(image), small(other))[0, 1])


def test_preview_window_shows_the_output_and_obeys_keys(
    display: str, fast_weights: Path, tmp_path: Path
) -> None:
    clip = fixture_path("clip.mp4")
    folder = tmp_path / "backgrounds"  # plain blue, plain red, then dark | light with text
    folder.mkdir()
    cv2.imwrite(str(folder / "a_blue.png"), np.full((90, 160, 3), (255, 0, 0), np.uint8))
    cv2.imwrite(str(folder / "b_red.png"), np.full((90, 160, 3), (0, 0, 255), np.uint8))
    text = np.full((90, 160, 3), 30, np.uint8)
    text[:, 80:] = 230
    cv2.putText(text, "vbg", (50, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 160, 255), 2)
    cv2.imwrite(str(folder / "c_text.png"), text)
    env = {**os.environ, "DISPLAY": display}
    vbg = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vbg",
            "--source",
            str(clip),
            "--width",  # the 320 x 180 clip shown at 640 x 360: room for the overlay
            "640",
            "--height",
            "360",
            "--loop",
            "--no-virtual-cam",
            "--background",
            str(folder),
            "--model",
            "lraspp_mobilenet_v3_large",
            "--weights",
            str(fast_weights),
            "--device",
            "cpu",
            "--inference-size",
            "64",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        window = subprocess.run(
            ["xdotool", "search", "--sync", "--name", "vbg preview"],
            capture_output=True,
            text=True,
            timeout=2 * HANG_GUARD,  # the model is loaded first
            env=env,
            check=True,
        ).stdout.split()[0]

        def press(key: str) -> None:
            subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True)
            subprocess.run(["xdotool", "key", key], env=env, check=True)

        def shot() -> np.ndarray:
            return _screenshot(display, window)

        # Xvfb has no window manager, whose exposure of a new window tells Qt to paint it: on a
        # busy CPU Qt can miss the window's first exposure and paint nothing into it (seen under
        # `stress`: all black for a minute while vbg ran, the picture at once after a map). A
        # window still black after 10 s (the model may still be loading) is mapped again, as a
        # window manager would expose it; a preview that shows nothing still fails below.
        if not _within(lambda: bool(shot().any()), 10.0):
            for action in ("windowunmap", "windowmap"):
                subprocess.run(["xdotool", action, "--sync", window], env=env, check=True)
        # An untrained model finds next to no person: the background fills the picture.
        _until(lambda: _share(shot(), (255, 0, 0)) > 0.7, "the first picture of the folder")
        press("n")  # next background: the red picture
        _until(lambda: _share(shot(), (0, 0, 255)) > 0.7, "the next picture")
        press("x")  # pass-through: the camera picture itself, hardly any red
        _until(lambda: _share(shot(), (0, 0, 255)) < 0.05, "the camera picture")
        sharp = _sharpness(shot())
        press("b")  # the blurred room
        _until(lambda: _sharpness(shot()) < sharp / 4, "the blurred room")
        press("x")
        _until(lambda: _sharpness(shot()) > sharp / 2, "the camera picture again")
        before = shot()
        press("m")  # mirror: the picture flipped left-right
        _until(
            lambda: _looks_like(shot(), before[:, ::-1]) > _looks_like(shot(), before) + 0.2,
            "the mirrored picture",
        )
        press("c")  # the first plain colour, #00B140
        _until(lambda: _share(shot(), (0x40, 0xB1, 0x00)) > 0.7, "the green colour")
        before = shot()
        press("question")  # the key help covers part of the picture
        _until(
            lambda: _share(shot(), (0x40, 0xB1, 0x00)) < _share(before, (0x40, 0xB1, 0x00)) - 0.05,
            "the key help",
        )
        press("question")
        _until(lambda: _share(shot(), (0x40, 0xB1, 0x00)) > 0.7, "the help hidden")
        # n after c: the picture after the one last shown (red), the third; the mirror is still
        # on, and it flips the camera's picture, never the background's: dark left, light right.
        press("n")
        _until(lambda: _halves(shot()) > 100, "the third picture, not mirrored")
        press("b")  # the keys are taken in order: n after b is the picture after the third
        press("n")
        _until(lambda: _share(shot(), (255, 0, 0)) > 0.7, "the first picture again")
        press("q")
        assert vbg.wait(HANG_GUARD) == 0
    finally:
        if vbg.poll() is None:
            vbg.kill()
        _, err = vbg.communicate(timeout=HANG_GUARD)
    assert "Traceback" not in err


# Run in a process of its own: OpenCV's window toolkit stays tied to a display once it has opened
# a window, and this display goes away after the test.
_SINK_SCRIPT = """
import json, threading
import numpy as np
from vbg.errors import SinkError
from vbg.outputs.preview import PreviewWindow

window = PreviewWindow()
seen = {"before": window.take() is None}
frames = [np.full((90, 160, 3), 50 * i, np.uint8) for i in range(4)]
writer = threading.Thread(target=lambda: [window.write(f) for f in frames])  # the sink thread
writer.start()
writer.join()
newest = window.take()
seen["newest"] = None if newest is None else int(newest[0, 0, 0])
seen["again"] = window.take() is None
window.show(newest)
seen["key"] = window.poll(50)
window.write(frames[1])
window.close()
seen["kept"] = int(window.take()[0, 0, 0])
try:
    window.write(frames[2])
except SinkError as exc:
    seen["closed"] = str(exc)
window.destroy()
window.destroy()
print(json.dumps(seen))
"""


def test_preview_window_is_an_output_that_keeps_the_newest_frame(display: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SINK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=2 * HANG_GUARD,
        env={**os.environ, "DISPLAY": display},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["before"] is True  # nothing written yet: nothing to show
    assert seen["newest"] == 150 and seen["again"] is True  # only the newest, and only once
    assert seen["key"] is None  # shown, no key pressed, not closed
    assert seen["kept"] == 50  # a frame written before close is still there to show
    assert seen["closed"] == "The preview output is closed."
