"""read_image on the pictures OpenCV's reader gets wrong: what a user would see on screen.

Every picture is made here with Pillow. Frames come back H x W x 3 uint8 BGR, so a red pixel
reads (0, 0, 255).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vbg.errors import BackgroundError
from vbg.images import TRANSPARENT_FILL, read_image

RED = (0, 0, 255)  # BGR
GREEN = (0, 255, 0)
BLUE = (255, 0, 0)
WHITE_BEHIND = TRANSPARENT_FILL[::-1]  # BGR of what shows through transparent pixels
JPEG_TOLERANCE = 12  # JPEG is lossy, flat colours come back within a few levels


def _near(pixel: np.ndarray, bgr: tuple[int, int, int], tolerance: int = JPEG_TOLERANCE) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(bgr)).max() <= tolerance)


def _is_frame(frame: np.ndarray, height: int, width: int) -> None:
    assert frame.shape == (height, width, 3)
    assert frame.dtype == np.uint8
    assert frame.flags.c_contiguous and frame.flags.writeable


def test_exif_orientation_6_comes_back_upright(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, left half red, right half blue; orientation 6 says "turn 90
    # degrees clockwise to show": upright, it is 20 wide x 40 high, red on top, blue below.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)

    frame = read_image(path)

    _is_frame(frame, 40, 20)
    assert _near(frame[5, 10], RED) and _near(frame[34, 10], BLUE)


def test_cmyk_jpeg_has_its_colours(tmp_path: Path) -> None:
    picture = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # magenta + yellow: red
    picture.paste((255, 0, 255, 0), (16, 0, 32, 16))  # cyan + yellow: green
    path = tmp_path / "print.jpg"
    picture.save(path, quality=95)
    with Image.open(path) as saved:
        assert saved.mode == "CMYK"

    frame = read_image(path)

    _is_frame(frame, 16, 32)
    assert _near(frame[8, 4], RED) and _near(frame[8, 28], GREEN)


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    levels = np.zeros((10, 40), np.uint16)
    levels[:, 10:20] = 257  # 1 in 8 bit
    levels[:, 20:30] = 32768  # mid grey: 128
    levels[:, 30:] = 65535  # white: 255 (clipping would make everything over 255 white)
    path = tmp_path / "scan.png"
    Image.fromarray(levels).save(path)
    with Image.open(path) as saved:
        assert saved.mode == "I;16"

    frame = read_image(path)

    _is_frame(frame, 10, 40)
    assert frame[5, [0, 15, 25, 35]].tolist() == [[0] * 3, [1] * 3, [128] * 3, [255] * 3]


def test_16_bit_rgb_png_white_is_255(tmp_path: Path) -> None:
    pixels = np.zeros((8, 16, 3), np.uint16)  # BGR for cv2.imwrite
    pixels[:, :8] = (0, 0, 65535)  # red
    pixels[:, 8:] = (65535, 65535, 65535)  # white
    path = tmp_path / "render.png"
    assert cv2.imwrite(str(path), pixels)

    frame = read_image(path)

    _is_frame(frame, 8, 16)
    assert frame[4, 2].tolist() == list(RED) and frame[4, 12].tolist() == [255, 255, 255]


def test_palette_png_with_transparent_index(tmp_path: Path) -> None:
    picture = Image.new("P", (20, 10), 0)
    picture.putpalette([0, 0, 255, 255, 0, 0])  # index 0 blue (transparent), index 1 red
    picture.paste(1, (10, 0, 20, 10))
    path = tmp_path / "logo.png"
    picture.save(path, transparency=0)

    frame = read_image(path)

    _is_frame(frame, 10, 20)
    assert frame[5, 2].tolist() == list(WHITE_BEHIND)  # not the blue stored under it
    assert frame[5, 15].tolist() == list(RED)


def test_palette_png_without_transparency(tmp_path: Path) -> None:
    picture = Image.new("P", (20, 10), 0)
    picture.putpalette([0, 0, 255, 255, 0, 0])
    picture.paste(1, (10, 0, 20, 10))
    path = tmp_path / "flat.png"
    picture.save(path)

    frame = read_image(path)

    assert frame[5, 2].tolist() == list(BLUE) and frame[5, 15].tolist() == list(RED)


def test_rgba_png_is_composited_over_the_fill(tmp_path: Path) -> None:
    picture = Image.new("RGBA", (30, 10), (0, 0, 0, 0))  # transparent, black underneath
    picture.paste((0, 255, 0, 255), (0, 0, 10, 10))  # opaque green
    picture.paste((0, 0, 0, 128), (10, 0, 20, 10))  # half-transparent black
    path = tmp_path / "overlay.png"
    picture.save(path)

    frame = read_image(path)

    _is_frame(frame, 10, 30)
    assert frame[5, 5].tolist() == list(GREEN)
    half = [round(c * 127 / 255) for c in WHITE_BEHIND]  # black at 128/255 over the fill
    assert np.abs(frame[5, 15].astype(int) - half).max() <= 1
    assert frame[5, 25].tolist() == list(WHITE_BEHIND)


def test_grey_with_alpha(tmp_path: Path) -> None:
    picture = Image.new("LA", (20, 10), (0, 0))
    picture.paste((60, 255), (0, 0, 10, 10))
    path = tmp_path / "mask.png"
    picture.save(path)

    frame = read_image(path)

    assert frame[5, 5].tolist() == [60] * 3 and frame[5, 15].tolist() == list(WHITE_BEHIND)


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "fonds d'écran 背景"
    folder.mkdir()
    path = folder / "plage_été.png"
    Image.new("RGB", (12, 6), (255, 0, 0)).save(path)

    assert read_image(path)[3, 6].tolist() == list(RED)


def _one_line(exc: pytest.ExceptionInfo[BackgroundError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BackgroundError, match="does not exist") as exc:
        read_image(tmp_path / "beach.jpg")
    assert "beach.jpg" in _one_line(exc)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(BackgroundError, match="not an image") as exc:
        read_image(path)
    assert "JPEG or PNG" in _one_line(exc)


def test_damaged_picture(tmp_path: Path) -> None:
    whole = tmp_path / "whole.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(whole, compress_level=0)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:200])  # the header survives, the pixels do not
    with pytest.raises(BackgroundError, match="cannot be decoded") as exc:
        read_image(cut)
    _one_line(exc)


def test_a_folder_is_not_a_picture(tmp_path: Path) -> None:
    folder = tmp_path / "holiday.jpg"
    folder.mkdir()
    with pytest.raises(BackgroundError, match="cannot be read") as exc:
        read_image(folder)
    _one_line(exc)


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="needs Unix permissions and a non-root user",
)
def test_unreadable_file(tmp_path: Path) -> None:  # pragma: no cover - CI may run as root
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(BackgroundError, match="cannot be read") as exc:
            read_image(path)
        _one_line(exc)
    finally:
        path.chmod(0o600)


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    huge, large = tmp_path / "huge.png", tmp_path / "large.png"
    Image.new("RGB", (20, 20)).save(huge)  # 400 pixels: over twice the limit, Pillow's error
    Image.new("RGB", (12, 12)).save(large)  # 144 pixels: over the limit, Pillow's warning

    with pytest.raises(BackgroundError, match="too large") as exc:
        read_image(huge)
    _one_line(exc)
    with pytest.raises(BackgroundError, match="too large"):
        read_image(large)  # the warning is an error under pytest
    # Where warnings are only printed (a normal run), the picture is refused all the same.
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(BackgroundError, match="too large"),
    ):
        read_image(large)
