"""The preview window: the output with a small status overlay, and the keys that control vbg.

OpenCV windows must be driven from the main thread; :class:`PreviewWindow` is only ever used there.
"""

from __future__ import annotations

import os
import platform

import cv2
import numpy as np

from vbg.errors import SinkError
from vbg.outputs.sinks import Sink

Frame = np.ndarray  # H x W x 3 uint8, BGR

WINDOW_TITLE = "vbg preview"

# (keys as shown to the user, what they do, action name). The README's key table matches this.
# n / p step through a folder from the picture last shown, also when b, c or x came between;
# with one picture, a video, blur or a colour as --background, they go back to it.
KEYS: tuple[tuple[str, str, str], ...] = (
    ("n / Right", "next picture (after the one last shown)", "next"),
    ("p / Left", "previous picture (before the one last shown)", "previous"),
    ("b", "blurred room", "blur"),
    ("c", "plain colour (again: next colour)", "color"),
    ("x", "pass-through: the camera as it is", "none"),
    ("m", "mirror on/off (you, never a background picture)", "mirror"),
    ("r", "start/stop recording", "record"),
    ("s", "snapshot to a PNG file", "snapshot"),
    ("?", "show/hide this help", "help"),
    ("q / Esc", "quit", "quit"),
)

_KEY_CODES: dict[int, str] = {
    ord("n"): "next",
    ord("p"): "previous",
    ord("b"): "blur",
    ord("c"): "color",
    ord("x"): "none",
    ord("m"): "mirror",
    ord("r"): "record",
    ord("s"): "snapshot",
    ord("?"): "help",
    ord("h"): "help",
    ord("q"): "quit",
    27: "quit",  # Esc
    # Arrow keys as waitKeyEx reports them on X11, Qt, Windows and macOS.
    65363: "next",
    65361: "previous",
    0x1000014: "next",
    0x1000012: "previous",
    2555904: "next",
    2424832: "previous",
    63235: "next",
    63234: "previous",
}


def action_for_key(code: int) -> str | None:
    """The action name for a ``cv2.waitKeyEx`` code, or None for keys vbg does not use."""
    if code < 0:
        return None
    return _KEY_CODES.get(code) or _KEY_CODES.get(code & 0xFF if code < 0x10000 else code)


def _draw_rows(frame: Frame, rows: list[tuple[str, str]], *, top: int, scale: float) -> int:
    """Draw rows of (left, right) text in two columns on a darkened box; returns its bottom."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = 1 if scale < 0.6 else 2

    def text_width(text: str) -> int:
        return int(cv2.getTextSize(text, font, scale, thickness)[0][0]) if text else 0

    line_h = int(28 * scale) + 6
    gap = text_width("  ")
    left_w = (
        max(text_width(left) for left, right in rows if right) if any(r for _, r in rows) else 0
    )
    width = max(
        text_width(left) if not right else left_w + gap + text_width(right) for left, right in rows
    )
    x0 = 8
    bottom = min(frame.shape[0], top + line_h * len(rows) + 8)
    box = frame[top:bottom, x0 : x0 + width + 16]
    box[:] = box // 3  # darken behind the text so it reads on any background
    for i, (left, right) in enumerate(rows):
        y = top + line_h * (i + 1) - 4
        for x, text in ((x0 + 8, left), (x0 + 8 + left_w + gap, right)):
            if text:
                cv2.putText(
                    frame, text, (x, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA
                )
    return bottom


def draw_overlay(frame: Frame, status: list[str], *, show_help: bool = False) -> Frame:
    """A copy of ``frame`` (H x W x 3 uint8 BGR) with the status lines and optional key help."""
    out = frame.copy()
    scale = max(0.4, min(1.0, frame.shape[1] / 1600))
    bottom = 0
    if status:
        bottom = _draw_rows(out, [(line, "") for line in status], top=8, scale=scale)
    if show_help:
        rows = [("Keys", "")] + [(keys, what) for keys, what, _ in KEYS]
        _draw_rows(out, rows, top=bottom + 8, scale=scale)
    return out


def display_available() -> bool:
    """Whether a window can be opened: always on macOS and Windows, with X11/Wayland on Linux."""
    if platform.system() != "Linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _point_qt_at_system_fonts() -> None:
    """opencv-python's Qt looks for fonts in a folder the wheel does not ship, and says so on
    stderr at every start; point it at the system's fonts instead, where there are some."""
    current = os.environ.get("QT_QPA_FONTDIR")
    if current is None or os.path.isdir(current):
        return
    for folder in (
        "/usr/share/fonts/truetype/dejavu",
        "/usr/share/fonts/truetype",
        "/usr/share/fonts",
    ):
        if os.path.isdir(folder):
            os.environ["QT_QPA_FONTDIR"] = folder
            return


class PreviewWindow(Sink):
    """The preview: an output like the others, whose window lives on the main thread.

    :meth:`write` (any thread) keeps the newest output frame; the main thread :meth:`take` s it,
    :meth:`show` s it with the overlay drawn, and :meth:`poll` s the keys. :meth:`destroy` (main
    thread) closes the window; ``close`` only ends the frames, since OpenCV windows must not be
    touched from other threads.
    """

    name = "preview"

    def __init__(self, title: str = WINDOW_TITLE) -> None:
        super().__init__()
        if not display_available():
            raise SinkError(
                "No display for the preview window (DISPLAY is not set): start vbg from a "
                "desktop session, or turn the window off with --no-preview."
            )
        self.title = title
        _point_qt_at_system_fonts()
        try:
            cv2.namedWindow(title, cv2.WINDOW_GUI_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as exc:
            raise SinkError(
                f"The preview window could not be opened ({exc}). Run with --no-preview."
            ) from exc
        self._newest: Frame | None = None
        self._shown = False
        self._destroyed = False

    def _write(self, frame: Frame) -> None:
        self._newest = frame

    def take(self) -> Frame | None:
        """The newest output frame not taken yet (H x W x 3 uint8 BGR), or None."""
        with self._lock:
            frame, self._newest = self._newest, None
        return frame

    def show(self, frame: Frame) -> None:
        """Show ``frame`` (H x W x 3 uint8 BGR, overlay already drawn). Main thread only."""
        if not self._shown:
            cv2.resizeWindow(self.title, frame.shape[1], frame.shape[0])
            self._shown = True
        cv2.imshow(self.title, frame)

    def poll(self, wait_ms: int = 1) -> str | None:
        """The action of a key pressed, "quit" when the window was closed, else None. Main
        thread only."""
        code = cv2.waitKeyEx(wait_ms)
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return "quit"
        return action_for_key(code)

    def destroy(self) -> None:
        """Close the window. Main thread only; safe to call twice."""
        self.close()
        if not self._destroyed:
            self._destroyed = True
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
