"""Pictures every stage shares: the Frame and Mask vocabulary, reading a picture file, and
scaling a picture to cover a frame size (never stretched).

- **Frame**: ``H x W x 3 uint8``, BGR (OpenCV's order) inside vbg; converted only at the edges.
- **Mask**: ``H x W float32`` in [0, 1], 1 = person.
- **Matte**: ``H x W uint8`` in [0, 255], 255 = person: the full-size mask as the compositor
  blends it (a quarter of a float mask's bytes, and blended in integers).

Small copies of a frame (for the model, the optical flow, the blurred room, the still-scene check)
are made from its halvings (:func:`halved`), which are made once per frame and shared.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vbg.errors import BackgroundError

Frame = np.ndarray  # H x W x 3 uint8, BGR
Mask = np.ndarray  # H x W float32 in [0, 1], 1 = person
Matte = np.ndarray  # H x W uint8 in [0, 255], 255 = person

HALVINGS_KEPT = 4  # frames whose halvings are kept (both threads of a live run look them up)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}

TRANSPARENT_FILL = (255, 255, 255)  # RGB: what shows through transparent pixels (white)

_SIXTEEN_BIT_GREY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def read_image(path: Path) -> Frame:
    """Read a picture file as an H x W x 3 uint8 BGR Frame (C-contiguous), upright.

    Read with Pillow, which handles what OpenCV's reader gets wrong or drops:

    - EXIF orientation: a phone photo stored sideways comes back upright.
    - CMYK (JPEG, TIFF): converted to RGB without a colour profile (the ICC profile is ignored).
    - 16-bit greyscale (mode ``I;16``, and ``I`` taken as 0-65535): scaled, not clipped, to
      8 bit (65535 -> 255, 32768 -> 128). 16-bit RGB(A) PNG and TIFF Pillow already reduces to
      8 bit by keeping the high byte (65535 -> 255).
    - Palette pictures, with or without a transparent index; greyscale (``L``, ``LA``, ``1``);
      RGBA.
    - Transparency (an alpha channel, a transparent palette index or colour key) is composited
      over white (:data:`TRANSPARENT_FILL`). White, because most pictures with transparent parts
      (logos, icons, slide graphics) are drawn to be seen on a white page: their dark lines and
      text would vanish over black.

    Raises :class:`BackgroundError`, its message saying what to do, when the file is missing,
    unreadable, not a picture, damaged, in a colour mode that has no RGB conversion, or larger
    than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 Mpixel).
    """
    try:
        with Image.open(path) as opened:  # Python's open(): non-ASCII paths work everywhere
            _check_size(path, opened.size)
            upright = ImageOps.exif_transpose(opened)  # a copy, decoded
            return _to_bgr(path, upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is raised only where warnings are errors (pytest -W error); elsewhere it is
        # printed and _check_size refuses the picture.
        raise _too_large(path) from exc
    except FileNotFoundError as exc:
        raise BackgroundError(f"Image '{path}' does not exist. Check the path.") from exc
    except UnidentifiedImageError as exc:
        raise BackgroundError(
            f"Image '{path}' is not an image file vbg can read. Use a JPEG or PNG file."
        ) from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise BackgroundError(
            f"Image '{path}' cannot be read ({exc.strerror}). Check that it is a file you may read."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's ways to say "damaged"
        raise BackgroundError(
            f"Image '{path}' cannot be decoded ({exc}). Save it again as a JPEG or PNG file."
        ) from exc


def _check_size(path: Path, size: tuple[int, int]) -> None:
    """Refuse a picture over Pillow's pixel limit before decoding it."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise _too_large(path)


def _too_large(path: Path) -> BackgroundError:
    limit = Image.MAX_IMAGE_PIXELS or 0
    return BackgroundError(
        f"Image '{path}' is too large to read safely (over {limit / 1e6:.0f} megapixels, or a "
        "damaged file claiming to be). Scale it down, e.g. to 3840 x 2160."
    )


def _to_bgr(path: Path, image: Image.Image) -> Frame:
    """An H x W x 3 uint8 BGR copy of ``image`` (any Pillow mode)."""
    if image.mode in _SIXTEEN_BIT_GREY:
        grey16 = np.asarray(image).astype(np.float32)  # H x W, 0..65535
        grey = np.clip(np.rint(grey16 * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    try:
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")  # a transparent index or colour key becomes alpha
            fill = Image.new("RGBA", rgba.size, (*TRANSPARENT_FILL, 255))
            rgb = Image.alpha_composite(fill, rgba).convert("RGB")
        else:
            rgb = image.convert("RGB")  # CMYK, YCbCr, P, L, 1 (a copy even when already RGB)
    except ValueError as exc:  # LAB, HSV and other modes with no direct conversion
        raise BackgroundError(
            f"Image '{path}' uses the colour mode {image.mode}, which vbg cannot convert. "
            "Save it as an RGB JPEG or PNG file."
        ) from exc
    return cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)  # a new, contiguous array


def cover(image: Frame, width: int, height: int) -> Frame:
    """Scale ``image`` (H x W x 3) to cover width x height, keeping its aspect, and centre-crop."""
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    scale = max(width / src_w, height / src_h)
    new_w, new_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    x, y = (new_w - width) // 2, (new_h - height) // 2
    return np.ascontiguousarray(resized[y : y + height, x : x + width])


def to_matte(mask: Mask | Matte) -> Matte:
    """A Matte (H x W uint8) for ``mask``: a Matte as it is, a Mask (float in [0, 1]) scaled
    to 0-255, clipped and rounded."""
    if mask.dtype == np.uint8:
        return mask
    return np.clip(np.rint(mask * np.float32(255.0)), 0, 255).astype(np.uint8)


def to_mask(matte: Matte) -> Mask:
    """The Mask (H x W float32 in [0, 1]) of a Matte (H x W uint8): matte / 255."""
    return matte.astype(np.float32) * np.float32(1.0 / 255.0)


# What was made from each of the last HALVINGS_KEPT images asked about, newest first:
# (image, ((key, made), ...)). Replaced whole, never changed in place, so the model's and the
# compositor's threads may both read and extend it without a lock (at worst a copy is made
# twice). vbg never writes into a frame it has read, which is what makes the identity safe.
_made: tuple[tuple[np.ndarray, tuple[tuple[Hashable, np.ndarray], ...]], ...] = ()


def _made_from(image: np.ndarray, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
    """What ``make()`` makes from ``image``, made once: kept under ``key`` with the image,
    looked up by the image's identity."""
    global _made
    for source, kept in _made:
        if source is image:
            for kept_key, value in kept:
                if kept_key == key:
                    return value
            break
    value = make()
    entries = _made  # make() may have kept more from the same image (a halving's halvings)
    kept = next((kept for source, kept in entries if source is image), ())
    others = tuple(entry for entry in entries if entry[0] is not image)
    _made = ((image, (*kept, (key, value))), *others[: HALVINGS_KEPT - 1])
    return value


def grey(frame: Frame, width: int, height: int) -> np.ndarray:
    """The frame (H x W x 3 uint8 BGR) as a small grey image of width x height (uint8): an area
    average. Made from the frame's smallest halving that the size divides into whole blocks
    (1280x720 to 320x180: the quarter as it is), which is the same average; other sizes are
    averaged from the frame itself (an area resize from a halving would blur them more).

    Made once per frame and size, like the halvings: the smoothing and the refiner both need
    the frame's grey at the model's size (1280x720 to 256x144 takes 1 ms). Callers must not
    write into the grey image they get."""
    return _made_from(frame, ("grey", width, height), lambda: _grey(frame, width, height))


def _grey(frame: Frame, width: int, height: int) -> np.ndarray:
    frame_h, frame_w = frame.shape[:2]
    times = 0
    while _whole_blocks(frame_w, frame_h, times + 1, width, height):
        times += 1
    small = halved(frame, times)
    if small.shape[:2] != (height, width):
        small = cv2.resize(small, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


def _whole_blocks(frame_w: int, frame_h: int, times: int, width: int, height: int) -> bool:
    """Whether halving a frame_w x frame_h frame ``times`` times leaves whole blocks of pixels
    for each pixel of width x height (and each halving took whole 2 x 2 blocks)."""
    block = 1 << times
    if frame_w % block or frame_h % block:
        return False
    small_w, small_h = frame_w // block, frame_h // block
    return small_w >= width and small_h >= height and not small_w % width and not small_h % height


def halved(image: np.ndarray, times: int) -> np.ndarray:
    """``image`` (H x W x C or H x W, any dtype OpenCV resizes) halved ``times`` times, each
    halving a 2 x 2 average (INTER_LINEAR at exactly half the size; odd sizes round down).

    The halvings of the last :data:`HALVINGS_KEPT` images asked for are kept, looked up by
    identity: the stages that each need a small copy of the same frame make one pyramid.
    """
    if times <= 0:
        return image

    def halve() -> np.ndarray:
        larger = halved(image, times - 1)
        height, width = larger.shape[:2]
        size = (max(1, width // 2), max(1, height // 2))
        return cv2.resize(larger, size, interpolation=cv2.INTER_LINEAR)

    return _made_from(image, ("halved", times), halve)
