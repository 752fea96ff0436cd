"""Backgrounds: what the person is put in front of.

A Background gives a Frame (H x W x 3 uint8 BGR) at the size of the camera frame it is asked for.
Images and videos are scaled to cover the frame and centre-cropped, never stretched.
Spec strings (``--background``): an image file, a folder of images, a video file, ``blur`` or
``blur:STRENGTH``, ``color:#RRGGBB``, or ``none`` (pass-through).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import cv2
import numpy as np

from vbg.errors import BackgroundError
from vbg.images import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    Mask,
    Matte,
    cover,
    halved,
    read_image,
    to_matte,
)

DEFAULT_BLUR = 21.0
COLORS = ("#00B140", "#FFFFFF", "#202020", "#3A6EA5")  # the preview's colour key cycles these

log = logging.getLogger("vbg")

_COLOR_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")


class Background:
    """Base class: ``render`` returns the background for one frame, or None for pass-through."""

    name = "background"

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        """Background for ``frame`` (H x W x 3 uint8 BGR) shown at time ``t`` seconds.

        ``matte`` (H x W uint8, 255 = person; a float Mask is converted) is the Matte the frame
        is composited with; only backgrounds made from the frame itself (blur) use it."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files held open (video backgrounds)."""


class PassThrough(Background):
    """No replacement: the camera frame is shown as it is."""

    name = "none"

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        return None


class ColorBackground(Background):
    """A plain colour, ``color`` given as (B, G, R)."""

    def __init__(self, color: tuple[int, int, int]) -> None:
        self.color = color
        b, g, r = color
        self.name = f"color:#{r:02X}{g:02X}{b:02X}"
        self._cache = np.zeros((0, 0, 3), np.uint8)

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        if self._cache.shape != frame.shape:
            self._cache = np.empty_like(frame)
            self._cache[:] = self.color
        return self._cache


class BlurBackground(Background):
    """The camera frame itself, blurred. ``strength`` is the Gaussian sigma in output pixels.

    ``weighted`` (with a mask): a mask-weighted blur, ``blur(frame * (1 - m)) / blur(1 - m)``, so
    the person's colours do not bleed into the blurred room as a glow around them; where the
    person covers the whole neighbourhood it falls back to the plain blur.
    """

    def __init__(self, strength: float = DEFAULT_BLUR, *, weighted: bool = True) -> None:
        self.strength = strength
        self.weighted = weighted
        self.name = "blur" if strength == DEFAULT_BLUR else f"blur:{strength:g}"

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        height, width = frame.shape[:2]
        # Blur at 1/2**levels of the size, so that the blur there is 2-4 px wide: the same look
        # for a fraction of the cost (1/8 for the default: about half the CPU time of the blur at
        # 1/5 before, benchmarks/blur_speed.py). Halving is a 2 x 2 average, OpenCV's fastest
        # downscale.
        levels = max(0, int(np.log2(max(1.0, self.strength / 2.0))))
        sigma = self.strength / 2**levels
        small = halved(frame, levels)
        if not self.weighted or matte is None:
            blurred = cv2.GaussianBlur(small, (0, 0), sigma)
        else:
            # The room's colours and weight (1 - mask) blurred in one 4-channel call.
            person = cv2.resize(to_matte(matte), small.shape[1::-1], interpolation=cv2.INTER_AREA)
            room = 1.0 - person.astype(np.float32) * np.float32(1.0 / 255.0)
            stack = np.empty((*room.shape, 4), np.float32)
            np.multiply(small, room[..., None], out=stack[..., :3], casting="unsafe")
            stack[..., 3] = room
            stack = cv2.GaussianBlur(stack, (0, 0), sigma)
            weight = stack[..., 3]
            spread = stack[..., :3] / np.maximum(weight, 1e-6)[..., None]
            untrusted = weight <= 0.02  # the person covers the neighbourhood: the plain blur
            if untrusted.any():
                plain = cv2.GaussianBlur(small, (0, 0), sigma)
                np.copyto(spread, plain, where=untrusted[..., None])  # not a gather and scatter
            blurred = cv2.convertScaleAbs(spread)  # rounded, saturated to uint8
        return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


class ImageBackground(Background):
    """A still image, covered and cropped to the frame size (cached per size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self._image = read_image(path)
        self._cache: Frame | None = None

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        height, width = frame.shape[:2]
        if self._cache is None or self._cache.shape[:2] != (height, width):
            self._cache = cover(self._image, width, height)
        return self._cache


class FolderBackground(Background):
    """The pictures of a folder, one at a time, in name order; :meth:`step` moves to the next or
    previous one.

    Files without a picture suffix (:data:`IMAGE_SUFFIXES`: a ``.txt``, a video) are ignored
    without a word. A picture that cannot be read, wherever it is in the folder, is skipped with
    one message naming it, and is not tried again; only a folder with no readable picture at all
    is an error. Pictures are read when they are shown, not all at the start.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            entries = list(folder.iterdir())
        except OSError as exc:
            raise BackgroundError(
                f"Background folder '{folder}' cannot be read ({exc.strerror}). Check that it "
                "is a folder you may read."
            ) from exc
        self.paths = sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise BackgroundError(
                f"Background folder '{folder}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})."
            )
        self._unreadable: set[Path] = set()
        found, skipped = self._readable_from(0, 1)
        if found is None:
            names = [path.name for path in self.paths]
            listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if names[3:] else "")
            raise BackgroundError(
                f"Background folder '{folder}' has no picture vbg can read ({listed}). "
                f"{skipped[0][1]}"
            )
        for path, why in skipped:
            log.warning("Background folder '%s': skipped %s: %s", folder, path.name, why)
        self.index, self._current = found
        self.name = self._current.name

    def _readable_from(
        self, index: int, direction: int
    ) -> tuple[tuple[int, ImageBackground] | None, list[tuple[Path, BackgroundError]]]:
        """The first readable picture at ``index`` or on from it in ``direction`` (1 or -1),
        at most once round the folder, with its index (None when there is none); and
        each picture found unreadable on the way, with why (not tried again later)."""
        skipped: list[tuple[Path, BackgroundError]] = []
        for _ in range(len(self.paths)):
            path = self.paths[index]
            if path not in self._unreadable:
                try:
                    return (index, ImageBackground(path)), skipped
                except BackgroundError as exc:
                    self._unreadable.add(path)
                    skipped.append((path, exc))
            index = (index + direction) % len(self.paths)
        return None, skipped

    def step(self, delta: int) -> str | None:
        """Show the picture ``delta`` places on (wrapping), or the next readable one beyond it;
        the picture shown stays when no other can be read.

        Returns one notice naming each picture skipped on the way (for the caller to log), or
        None when none was."""
        if not delta:
            return None
        start = (self.index + delta) % len(self.paths)
        found, skipped = self._readable_from(start, 1 if delta > 0 else -1)
        if found is not None:
            self.index, self._current = found
            self.name = self._current.name
        if not skipped:
            return None
        return "Background folder: skipped " + "; ".join(f"{p.name}: {e}" for p, e in skipped)

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        return self._current.render(frame, t, matte)


class VideoBackground(Background):
    """A video file that loops, at its own frame rate, covered and cropped to the frame size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self._capture = cv2.VideoCapture(str(path))
        ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok or first is None:
            self._capture.release()
            raise BackgroundError(
                f"Background video '{path}' cannot be decoded. Use an MP4 (H.264) or another "
                "format OpenCV reads."
            )
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self._raw = first
        self._index = 0  # index of self._raw within the file since the last loop
        self._loop_start = 0.0  # t at which the current loop began
        self._cache: Frame | None = None

    def _wanted(self, t: float) -> int:
        return int((t - self._loop_start) * self.fps + 1e-6)

    def _advance_to(self, t: float) -> None:
        while self._index < self._wanted(t):
            ok, raw = self._capture.read()
            if ok:
                self._index += 1
            else:  # the end: start again from the first frame
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, raw = self._capture.read()
                if not ok:
                    raise BackgroundError(f"Background video '{self.path}' stopped decoding.")
                self._loop_start += (self._index + 1) / self.fps
                self._index = 0
            self._raw = raw
            self._cache = None

    def render(self, frame: Frame, t: float, matte: Matte | Mask | None = None) -> Frame | None:
        height, width = frame.shape[:2]
        self._advance_to(t)
        if self._cache is None or self._cache.shape[:2] != (height, width):
            self._cache = cover(self._raw, width, height)
        return self._cache

    def close(self) -> None:
        self._capture.release()


def parse_color(spec: str) -> tuple[int, int, int]:
    """``#RRGGBB`` (the leading # optional) -> (B, G, R); raises :class:`BackgroundError`."""
    match = _COLOR_RE.match(spec.strip())
    if not match:
        raise BackgroundError(
            f"colour must be of the form #RRGGBB (for example color:#00B140), not {spec!r}."
        )
    value = int(match.group(1), 16)
    return value & 0xFF, (value >> 8) & 0xFF, value >> 16


@dataclasses.dataclass(frozen=True)
class BackgroundSpec:
    """A ``--background`` spec as read, before anything is opened. ``kind`` is ``none``,
    ``blur`` (with ``strength``), ``color`` (with ``color``, B, G, R) or ``path`` (an image, a
    folder or a video, whose file is checked only when it is opened)."""

    kind: str
    strength: float = DEFAULT_BLUR
    color: tuple[int, int, int] = (0, 0, 0)
    path: Path = Path()


def parse_spec(spec: str) -> BackgroundSpec:
    """Read a ``--background`` spec without opening anything (the config checks specs with it).

    Raises :class:`BackgroundError` for an empty spec, a blur strength that is not a number from
    1 to 200 or a colour that is not ``#RRGGBB``; a file that is missing is found only by
    :func:`open_background`."""
    text = spec.strip()
    lower = text.lower()
    if not text:
        raise BackgroundError(
            "the background is empty: give an image, a folder of images, a video, blur, "
            "blur:STRENGTH, color:#RRGGBB or none."
        )
    if lower == "none":
        return BackgroundSpec("none")
    if lower == "blur":
        return BackgroundSpec("blur")
    if lower.startswith("blur:"):
        try:
            strength = float(lower.split(":", 1)[1])
        except ValueError:
            strength = -1.0
        if not 1 <= strength <= 200:  # written so that NaN fails too
            raise BackgroundError(f"blur strength must be a number from 1 to 200, not {spec!r}.")
        return BackgroundSpec("blur", strength=strength)
    if lower.startswith(("color:", "colour:")):
        return BackgroundSpec("color", color=parse_color(text.split(":", 1)[1]))
    return BackgroundSpec("path", path=Path(text).expanduser())


def open_background(spec: str, *, blur_weighted: bool = True) -> Background:
    """Turn a ``--background`` spec into a Background; raises :class:`BackgroundError`."""
    parsed = parse_spec(spec)
    if parsed.kind == "none":
        return PassThrough()
    if parsed.kind == "blur":
        return BlurBackground(parsed.strength, weighted=blur_weighted)
    if parsed.kind == "color":
        return ColorBackground(parsed.color)
    path = parsed.path
    if path.is_dir():
        return FolderBackground(path)
    if not path.is_file():
        raise BackgroundError(
            f"Background {spec!r} does not exist. Give an image, a folder of images, a video, "
            "blur, blur:STRENGTH, color:#RRGGBB or none."
        )
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoBackground(path)
    return ImageBackground(path)
