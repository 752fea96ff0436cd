"""Output files: checked before anything opens, never written over an input, never overwritten
unless the user asks, and never written by two vbg runs at once.

- :func:`check_output_file` says, before a camera, model or input is opened, whether a file can
  be written where the user asked (its folder exists and takes a new file, it is not a folder,
  it does not exist yet or ``overwrite`` is on, no other vbg is writing it).
- :func:`same_file` compares two paths as the file system does (a symlink or a hard link to a
  file is that file).
- :func:`claim` opens an output file for a writer that opens it again by name (FFmpeg): without
  truncating it, with an exclusive lock (``flock``) that the kernel releases when the process
  ends, however it ends (``kill -9`` included), so nothing stale is left behind. Windows has no
  ``flock``; there the lock is not taken (two runs writing one file are not refused).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from vbg.errors import ConfigError, SinkError

OVERWRITE_HINT = "add --overwrite (config: overwrite = true), or give another name"


def reason(exc: BaseException) -> str:
    """The operating system's (or FFmpeg's) words for ``exc`` ("No space left on device"),
    without the path they repeat."""
    strerror = getattr(exc, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else str(exc)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path, or links to one file (symlinks
    followed, hard links by device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the same only by name
        return a.resolve() == b.resolve()


def check_folder(folder: Path, what: str) -> None:
    """Raise :class:`SinkError` unless ``folder`` exists, is a folder and takes a new file (a
    file is made there and removed again, so the reason is the system's own: "Permission
    denied", "Read-only file system")."""
    if not folder.exists():
        raise SinkError(f"Cannot write {what}: folder '{folder}' does not exist. Create it first.")
    if not folder.is_dir():
        raise SinkError(f"Cannot write {what}: '{folder}' is not a folder.")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SinkError(
            f"Cannot write {what}: folder '{folder}' does not take new files ({reason(exc)}). "
            "Choose a folder you may write to."
        ) from exc


def check_output_file(path: Path, what: str, *, overwrite: bool) -> None:
    """Raise before anything opens when ``path`` cannot be written as ``what`` ("recording
    'x.mkv'"): its folder is missing, not a folder or not writable, or ``path`` is a folder, or
    another vbg is writing it (:class:`SinkError`, a runtime failure); or it exists and
    ``overwrite`` is off (:class:`ConfigError`, a usage error)."""
    if path.is_dir():
        raise SinkError(f"Cannot write {what}: it is a folder. Give a file name.")
    check_folder(path.parent, what)
    if not path.exists():
        return
    if not path.is_file():  # a device, a FIFO, a socket: never replaced, never opened to look
        raise ConfigError(
            f"Will not write {what}: it is not a regular file (a device or a pipe). "
            "Give a file name."
        )
    if not overwrite:
        raise _exists(what)
    if _locked_elsewhere(path):
        raise SinkError(_in_use(what))
    if not os.access(path, os.W_OK):
        raise SinkError(f"Cannot write {what}: it may not be written (Permission denied).")


def _exists(what: str) -> ConfigError:
    return ConfigError(f"Will not replace {what}: it exists; {OVERWRITE_HINT}.")


def _in_use(what: str) -> str:
    return (
        f"Cannot write {what}: another vbg run is writing it. Wait until it ends, or give "
        "another name."
    )


def _lock(fd: int) -> None:
    """An exclusive ``flock`` on ``fd``, not waiting: raises OSError (EWOULDBLOCK) when another
    process holds it. Windows has no flock (``fcntl`` is imported here, not at the top, so that
    vbg imports there): nothing is locked."""
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _held_elsewhere(exc: OSError) -> bool:
    return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)


def _locked_elsewhere(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        _lock(fd)
    except OSError as exc:
        return _held_elsewhere(exc)
    finally:
        os.close(fd)
    return False


class Claim:
    """An output file held for writing: created if missing (never truncated here), locked
    against other vbg runs while this one writes. ``created``: whether this claim made it
    (:meth:`release` with ``remove=True`` then removes it again, for an output that failed
    before anything was written)."""

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path, self._fd, self.created = path, fd, created

    def release(self, *, remove: bool = False) -> None:
        """Unlock (closing the descriptor); ``remove``: delete the file if this claim made it."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if remove and self.created:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(fd)  # closing releases the flock


def claim(path: Path, what: str, *, overwrite: bool) -> Claim:
    """Hold ``path`` for writing ``what`` (see :class:`Claim`).

    Raises :class:`ConfigError` when it exists and ``overwrite`` is off, :class:`SinkError`
    when another vbg writes it or it cannot be created (with the system's reason)."""
    flags = os.O_WRONLY | os.O_CREAT | (0 if overwrite else os.O_EXCL)
    existed = path.exists()
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        raise _exists(what) from None
    except OSError as exc:
        raise SinkError(f"Cannot write {what} ({reason(exc)}).") from exc
    held = Claim(path, fd, created=not existed)
    try:
        _lock(fd)
    except OSError as exc:
        held.release(remove=True)
        if _held_elsewhere(exc):
            raise SinkError(_in_use(what)) from exc
        raise SinkError(f"Cannot write {what} ({reason(exc)}).") from exc
    return held


def write_file(path: Path, data: bytes, what: str, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` whole or not at all: into a new file beside it, then renamed
    over it, so that a failed write (a full disk) leaves an existing file as it was and no
    half-written one. Raises :class:`SinkError` with the system's reason, or
    :class:`ConfigError` when ``path`` exists and ``overwrite`` is off."""
    if not overwrite and path.exists():
        raise _exists(what)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SinkError(f"Cannot write {what} ({reason(exc)}).") from exc
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temporary, _mode_of(path))
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise SinkError(f"Writing {what} failed ({reason(exc)}).") from exc


def _mode_of(path: Path) -> int:
    """The permissions a replaced file had, else rw-r--r-- (mkstemp's own are rw-------)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o644
