"""What the user reads. Every message of vbg goes through ``logging.getLogger("vbg")``; this module
is the one place that decides how it looks on the terminal (``vbg: ...`` on stderr, errors as
``vbg: error: ...``) and how much is shown (``-q``: errors only, ``-v``: details too).

The preview window shows the same messages in its overlay through a :class:`NoticeHandler`.
"""

from __future__ import annotations

import collections
import logging
import sys
from typing import TextIO

log = logging.getLogger("vbg")

QUIET, NORMAL, VERBOSE = -1, 0, 1
_LEVELS = {QUIET: logging.ERROR, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"vbg: error: {text}"
        if record.levelno <= logging.DEBUG:
            return f"vbg: [{record.threadName}] {text}"
        return f"vbg: {text}"


def setup(verbosity: int = NORMAL, stream: TextIO | None = None) -> None:
    """Send vbg's messages to ``stream`` (stderr) at the level ``verbosity`` asks for
    (:data:`QUIET`, :data:`NORMAL` or :data:`VERBOSE`); called once by the command line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    for old in [h for h in log.handlers if getattr(h, "_vbg_terminal", False)]:
        log.removeHandler(old)
    handler._vbg_terminal = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(_LEVELS[max(QUIET, min(VERBOSE, verbosity))])
    log.propagate = False


class NoticeHandler(logging.Handler):
    """Keeps the newest warnings and infos for the preview's overlay; :meth:`take` empties it."""

    def __init__(self, level: int = logging.INFO, keep: int = 32) -> None:
        super().__init__(level)
        self._texts: collections.deque[str] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        self._texts.append(record.getMessage())

    def take(self) -> list[str]:
        """The messages since the last call, oldest first."""
        texts = []
        while self._texts:
            texts.append(self._texts.popleft())
        return texts
