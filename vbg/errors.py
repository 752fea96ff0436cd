"""The one exception hierarchy of vbg.

Every error a user can cause (a missing file, an absent camera, a wrong config key, a virtual
camera that is not set up) is raised as a subclass of :class:`VbgError` whose message says what
to do. The CLI prints that message on one line and exits with :data:`VbgError.exit_code`.
"""

from __future__ import annotations


class VbgError(Exception):
    """Base class for errors that are reported to the user as one clear line."""

    exit_code = 1


class ConfigError(VbgError):
    """A config file, config key or command-line value is wrong."""

    exit_code = 2


class SourceError(VbgError):
    """The camera or input file cannot be opened or read."""


class SourceLost(SourceError):
    """A live source (a camera) stopped sending frames mid-run; it may come back (reopen)."""


class BackgroundError(VbgError):
    """A background spec, image, folder or video is wrong or unreadable."""


class ModelError(VbgError):
    """A model name, weights file or device cannot be used."""


class ProcessingError(VbgError):
    """A frame could not be segmented, filtered or composited (not the model's fault)."""


class SinkError(VbgError):
    """An output (virtual camera, preview window, recording) cannot be opened or written."""
