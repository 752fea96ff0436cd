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


class _Terminal(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``stream``, or to whatever ``sys.stderr`` is when a message comes (so a
    redirected stderr, as tests and embedding programs make, gets it)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        self._fixed = value if value is not sys.stderr else None


def setup(verbosity: int = NORMAL, stream: TextIO | None = None) -> None:
    """Send vbg's messages to ``stream`` (stderr) at the level ``verbosity`` asks for
    (:data:`QUIET`, :data:`NORMAL` or :data:`VERBOSE`); called by the command line."""
    handler = _Terminal(stream)
    handler.setFormatter(_Formatter())
    for old in [h for h in log.handlers if isinstance(h, _Terminal)]:
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(_LEVELS[max(QUIET, min(VERBOSE, verbosity))])
    log.propagate = False


def is_set_up() -> bool:
    """Whether :func:`setup` has given vbg's messages a terminal."""
    return any(isinstance(h, _Terminal) for h in log.handlers)


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
