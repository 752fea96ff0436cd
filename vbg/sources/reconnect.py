"""A live source that rides out a camera being unplugged: the picture goes on, and the camera is
reopened with backoff until it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from vbg.errors import SourceLost
from vbg.images import Frame
from vbg.sources.capture import Source

log = logging.getLogger("vbg")

RECONNECT_FIRST = 0.5  # seconds before the first try to reopen a lost camera; doubled each try
RECONNECT_MAX = 5.0  # at most this long between tries
LOST_NOTICE = "camera lost, reconnecting..."


class ReconnectingSource(Source):
    """Wraps a live ``source``. When it stops sending frames (:class:`SourceLost`), :meth:`read`
    gives the last good frame again at the source's rate, with :attr:`notice` set, while the
    camera is reopened after ``first_wait`` seconds, then twice as long after each failed try
    (at most ``max_wait``). When it is back, its frames come again and the notice goes.

    A source lost before its first frame fails as it is. ``clock`` and ``sleep`` are the time
    functions (tests pass their own).
    """

    def __init__(
        self,
        source: Source,
        *,
        first_wait: float = RECONNECT_FIRST,
        max_wait: float = RECONNECT_MAX,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = source
        self.width, self.height, self.fps = source.width, source.height, source.fps
        self.description = source.description
        self.live = source.live
        self.first_wait, self.max_wait = first_wait, max_wait
        self._clock, self._sleep = clock, sleep
        self._last: Frame | None = None
        self._wait = first_wait
        self._next_try = 0.0
        self.notice: str | None = None
        self.losses = 0  # how often the source was lost
        self.tries: list[float] = []  # when each try to reopen it was made (clock time)

    def read(self) -> Frame | None:
        if self.notice is None:
            try:
                frame = self.inner.read()
            except SourceLost as exc:
                if self._last is None:
                    raise
                self._lose(exc)
                return self._last
            if frame is not None:
                self._last = frame
            return frame
        self._sleep(1.0 / self.fps)
        if self._clock() >= self._next_try and self._reopen():
            return self.read()
        return self._last

    def _lose(self, exc: SourceLost) -> None:
        self.losses += 1
        self.notice = LOST_NOTICE
        self._wait = self.first_wait
        self._next_try = self._clock() + self._wait
        log.warning("%s Reconnecting...", exc)

    def _reopen(self) -> bool:
        self.tries.append(self._clock())
        try:
            self.inner.reopen()
        except SourceLost:
            self._wait = min(2.0 * self._wait, self.max_wait)
            self._next_try = self._clock() + self._wait
            return False
        self.notice = None
        log.warning("%s is back.", self.description)
        return True

    def reopen(self) -> None:
        self.inner.reopen()

    def close(self) -> None:
        self.inner.close()
