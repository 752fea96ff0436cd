"""The one exception hierarchy of vbg, and its exit codes.

Every error a user can cause (a missing file, an absent camera, a wrong config key, a virtual
camera that is not set up) is raised as a subclass of :class:`VbgError` whose message says what
to do. The CLI prints that message as one line (``vbg: error: ...``, no traceback; ``-v`` adds
where it happened) and exits with :data:`VbgError.exit_code`.

One exit-code rule for every command:

- **2, a usage or config error**: what was typed, or written in the ``--config`` file, is wrong,
  and vbg says so before it opens anything: an unknown command, flag or config key, a flag
  without its value, a value of the wrong type or out of range (``--mask-smoothing 1``, an odd
  ``--width``, ``--width`` without ``--height``), an unknown ``--model`` name, a malformed
  ``--background`` spec (``color:#zz0000``, ``blur:0``), an output file name of the wrong kind
  (``--record call.avi``, a video processed to ``out.png``) or the input's own name, a config
  file that is missing or not valid TOML. argparse's errors and :class:`ConfigError`; the values
  are checked in :mod:`vbg.config` (and the command's own flags in its command), not where they
  are used.
- **1, a runtime failure**: the command is well formed, but something it names or needs fails
  when vbg opens or uses it: a camera, input, background or weights file that is missing or
  unreadable (a path is checked when it is opened, as a camera is), a model that cannot be
  downloaded, a device that is not there (``--device cuda`` without CUDA), a virtual camera that
  cannot be opened, a disk that is full; and ``vbg doctor`` finding something missing. Every other
  :class:`VbgError`.
- **0**: done, also after ``--help`` and after a run ended with the preview's ``q`` key.
- **128 + the signal's number**, as shells report it: stopped by a signal, the outputs
  finalised (a recording, the frames ``vbg process`` had written, the stats): **130** Ctrl-C
  (SIGINT), **143** SIGTERM, **129** SIGHUP (the terminal closed). A second signal while vbg
  stops is only noted; stopping takes a few seconds at most.
"""

from __future__ import annotations


class VbgError(Exception):
    """Base class for errors that are reported to the user as one clear line."""

    exit_code = 1


class ConfigError(VbgError):
    """A config file, config key or command-line value is wrong: a usage error (exit 2)."""

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
