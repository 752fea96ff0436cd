"""The compositor and backgrounds on real photos with their true person masks."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import fixture_path
from vbg.compositing.backgrounds import (
    Background,
    BlurBackground,
    ColorBackground,
    FolderBackground,
    ImageBackground,
    PassThrough,
    VideoBackground,
    open_background,
    parse_color,
)
from vbg.compositing.compositor import Compositor
from vbg.errors import BackgroundError
from vbg.images import Frame, Mask, cover

PHOTO = "doctor_saxon"  # one person, 320 x 214, over a detailed rocky landscape
BACKGROUND = "architecture-5082700_1280.jpg"  # 480 x 270


def _photo_and_mask() -> tuple[np.ndarray, np.ndarray]:
    root = fixture_path("photos")
    frame = cv2.imread(str(root / "images" / f"{PHOTO}.jpg"))
    truth = cv2.imread(str(root / "masks" / f"{PHOTO}.png"), cv2.IMREAD_GRAYSCALE)
    # A soft edge, as the model gives: 1 inside, 0 outside, a ramp a few pixels wide between.
    mask = cv2.GaussianBlur((truth > 127).astype(np.float32), (0, 0), 2.0)
    return frame, mask


def _regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inside, outside = mask > 0.999, mask < 0.001
    edge = (mask > 0.3) & (mask < 0.7)
    assert inside.sum() > 1000 and outside.sum() > 1000 and edge.sum() > 100
    return inside, outside, edge


def test_person_from_frame_rest_from_background_edges_blend() -> None:
    frame, mask = _photo_and_mask()
    background = ImageBackground(fixture_path("backgrounds", BACKGROUND))
    out = Compositor(background).composite(frame, mask, 0.0)
    bg = background.render(frame, 0.0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    inside, outside, edge = _regions(mask)
    assert np.abs(out[inside].astype(int) - frame[inside]).max() <= 1
    assert np.abs(out[outside].astype(int) - bg[outside]).max() <= 1
    expected = frame * mask[..., None] + bg * (1 - mask[..., None])
    assert np.abs(out[edge] - expected[edge]).max() <= 1.0
    # At the edge the output really is between the two, not one or the other.
    differs = np.abs(frame[edge].astype(int) - bg[edge]).sum(axis=1) > 60
    between = out[edge][differs].astype(int)
    assert (np.abs(between - frame[edge][differs]).sum(axis=1) > 10).mean() > 0.9
    assert (np.abs(between - bg[edge][differs]).sum(axis=1) > 10).mean() > 0.9


def test_colour_background_and_colour_specs() -> None:
    frame, mask = _photo_and_mask()
    out = Compositor(open_background("color:#00B140")).composite(frame, mask, 0.0)
    _, outside, _ = _regions(mask)
    assert (out[outside] == (0x40, 0xB1, 0x00)).all()  # BGR
    assert parse_color("#FF8000") == (0x00, 0x80, 0xFF)
    for bad in ("color:green", "color:#12345", "color:#GG0000"):
        with pytest.raises(BackgroundError, match="#RRGGBB"):
            open_background(bad)


def test_blur_background_is_the_blurred_room() -> None:
    frame, mask = _photo_and_mask()
    out = Compositor(open_background("blur:15")).composite(frame, mask, 0.0)
    inside, outside, _ = _regions(mask)
    blurred = BlurBackground(15).render(frame, 0.0, mask)
    assert blurred is not None
    assert np.array_equal(out[outside], blurred[outside])
    assert np.abs(out[inside].astype(int) - frame[inside]).max() <= 1
    # Blurred: much less fine detail than the frame has.
    assert cv2.Laplacian(blurred, cv2.CV_32F).var() < 0.05 * cv2.Laplacian(frame, cv2.CV_32F).var()
    for bad in ("blur:0", "blur:abc", "blur:500"):
        with pytest.raises(BackgroundError, match="blur strength"):
            open_background(bad)


def _halo(blurred: np.ndarray, reference: np.ndarray, truth: np.ndarray) -> float:
    """Mean colour difference in a band up to 15 pixels outside the person."""
    near = cv2.dilate(truth.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    band = near & ~truth
    return float(np.abs(blurred[band].astype(int) - reference[band]).sum(axis=1).mean())


def test_mask_weighted_blur_does_not_bleed_the_person_into_the_room() -> None:
    frame, mask = _photo_and_mask()
    truth = mask > 0.5
    # What the blurred room should look like next to the person: a blur of the room alone.
    room = (~truth).astype(np.float32)
    spread = cv2.GaussianBlur(frame.astype(np.float32) * room[..., None], (0, 0), 21)
    reference = spread / np.maximum(cv2.GaussianBlur(room, (0, 0), 21), 1e-6)[..., None]
    plain = BlurBackground(weighted=False).render(frame, 0.0, mask)
    weighted = BlurBackground().render(frame, 0.0, mask)
    assert plain is not None and weighted is not None
    assert _halo(weighted, reference, truth) < 0.6 * _halo(plain, reference, truth)
    # Far from the person both are the same blur.
    far = cv2.dilate(truth.astype(np.uint8), np.ones((151, 151), np.uint8)) == 0
    assert far.sum() > 1000
    assert np.abs(weighted[far].astype(int) - plain[far]).mean() < 2.0


def _exact_weighted_blur(frame: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The mask-weighted blur done at full size in float32, the rule BlurBackground follows:
    blur(frame * room) / blur(room), the plain blur where the room's weight is at most 0.02."""
    room = 1.0 - mask
    weight = cv2.GaussianBlur(room, (0, 0), sigma)
    spread = cv2.GaussianBlur(frame.astype(np.float32) * room[..., None], (0, 0), sigma)
    plain = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), sigma)
    out = np.where((weight > 0.02)[..., None], spread / np.maximum(weight, 1e-6)[..., None], plain)
    return np.clip(out + 0.5, 0, 255)


def test_the_reduced_size_blur_is_the_full_size_blur_within_a_grey_level() -> None:
    # BlurBackground blurs at 1/8 of 720p (sigma 2.6 px there) and scales back up linearly.
    # Measured here: 0.36 grey levels on average as the composite shows it (weighted by the
    # room, 1 - mask), 9 at the 99.9th percentile, where the blur at 1/5 before issue 14 gave
    # 0.19 and 6 (benchmarks/blur_speed.py: 0.44 / 9 against 0.23 / 5 on the test videos). The
    # bounds leave twice that: below what a blurred room shows, far below a wrong rule (the
    # plain blur next to the person differs by tens of grey levels).
    frame, mask = _photo_and_mask()
    frame = cover(frame, 1280, 720)
    mask = cover(np.dstack([mask] * 3), 1280, 720)[..., 0]
    exact = _exact_weighted_blur(frame, mask, 21.0)
    weighted = BlurBackground().render(frame, 0.0, mask)
    assert weighted is not None and weighted.shape == frame.shape and weighted.dtype == np.uint8
    seen = np.abs(weighted - exact) * (1.0 - mask)[..., None]
    assert seen.mean() < 0.75 and np.percentile(seen, 99.9) < 18
    plain = BlurBackground(weighted=False).render(frame, 0.0, None)
    assert plain is not None
    difference = np.abs(plain - cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 21.0))
    assert difference.mean() < 1.0 and np.percentile(difference, 99.9) < 18
    # Other strengths and sizes keep the same rule (a 1/2**k size with a 2-4 px blur there).
    small_frame, small_mask = frame[:357, :641], mask[:357, :641]  # odd sizes
    for strength in (3.0, 8.0, 60.0):
        out = BlurBackground(strength).render(small_frame, 0.0, small_mask)
        assert out is not None and out.shape == small_frame.shape
        exact = _exact_weighted_blur(small_frame, small_mask, strength)
        seen = np.abs(out - exact) * (1.0 - small_mask)[..., None]
        assert seen.mean() < 1.5  # measured 0.52, 0.78, 1.08


def test_the_person_colour_does_not_leak_into_the_blurred_room() -> None:
    # A saturated red person on a grey room: next to the person the blurred room stays grey.
    height, width = 720, 1280
    person = np.zeros((height, width), np.float32)
    cv2.ellipse(person, (width // 2, height), (200, 500), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(person, (0, 0), 3.0)  # a model's soft edge
    frame = np.full((height, width, 3), 128, np.uint8)
    frame[person > 0.5] = (0, 0, 255)  # BGR red
    truth = (person > 0.5).astype(np.uint8)
    band = (cv2.dilate(truth, np.ones((31, 31), np.uint8)) > 0) & (truth == 0)
    weighted = BlurBackground().render(frame, 0.0, mask)
    plain = BlurBackground(weighted=False).render(frame, 0.0, mask)
    assert weighted is not None and plain is not None
    # Measured: 5.6 grey levels off on average (at most 10); the rule done at full size leaves
    # 3.7 (the soft edge's person side counts a little as room), the blur at 1/5 before issue 14
    # 4.5 (at 1/8 a small pixel the edge crosses holds more of the person), the plain blur 42.
    off = np.abs(weighted[band].astype(int) - 128)
    assert off.mean() < 7.0 and off.max() <= 14
    assert np.abs(plain[band].astype(int) - 128).mean() > 20  # the leak the weighting prevents


def test_light_wrap_touches_only_the_edge_inside_the_person() -> None:
    frame, mask = _photo_and_mask()
    background = ColorBackground((255, 255, 255))
    plain = Compositor(background).composite(frame, mask, 0.0)
    wrapped = Compositor(background, light_wrap=0.8).composite(frame, mask, 0.0)
    changed = np.abs(wrapped.astype(int) - plain).sum(axis=2) > 3
    inside, outside, _ = _regions(mask)
    deep = cv2.erode(inside.astype(np.uint8), np.ones((61, 61), np.uint8)) > 0
    rim = inside & ~(cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    assert deep.sum() > 1000 and rim.sum() > 1000  # both regions are there to look at
    assert changed[rim].mean() > 0.5  # the person's rim takes on the white background light
    assert not changed[deep].any() and not changed[outside].any()
    assert (wrapped[rim].astype(int) >= plain[rim].astype(int) - 1).all()  # only lighter


def test_pass_through_mirror_and_no_mask_yet() -> None:
    frame, mask = _photo_and_mask()
    assert np.array_equal(Compositor(PassThrough()).composite(frame, mask, 0.0), frame)
    mirrored = Compositor(PassThrough(), mirror=True).composite(frame, mask, 0.0)
    assert np.array_equal(mirrored, frame[:, ::-1])
    # Before the first mask only the background is shown: the room never leaks.
    colour = Compositor(ColorBackground((1, 2, 3))).composite(frame, None, 0.0)
    assert (colour == (1, 2, 3)).all()


def test_background_covers_and_crops_never_stretches() -> None:
    image = cv2.imread(str(fixture_path("backgrounds", BACKGROUND)))
    src_h, src_w = image.shape[:2]
    for width, height in ((640, 640), (1280, 720), (360, 640)):
        out = cover(image, width, height)
        assert out.shape == (height, width, 3)
        scale = max(width / src_w, height / src_h)
        scaled = cv2.resize(image, (round(src_w * scale), round(src_h * scale)))
        y, x = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
        crop = scaled[y : y + height, x : x + width].astype(int)
        assert np.abs(out.astype(int) - crop).mean() < 2.0  # same picture, same aspect


def test_video_background_plays_at_its_rate_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "bg.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i + 20, np.uint8))
    writer.release()
    background = open_background(str(path))
    assert isinstance(background, VideoBackground) and background.fps == 10
    frame = np.zeros((96, 128, 3), np.uint8)

    def level(t: float) -> int:
        shown = background.render(frame, t)
        assert shown is not None and shown.shape == frame.shape
        return round(float(shown.mean()))

    levels = [level(t) for t in (0.0, 0.1, 0.25, 0.4, 0.5, 0.6)]
    assert levels[:4] == pytest.approx([20, 60, 100, 180], abs=4)
    assert levels[4:] == pytest.approx([20, 60], abs=4)  # looped after 5 frames at 10 fps
    background.close()


def test_folder_background_steps_and_skips_broken_files(tmp_path: Path) -> None:
    for name, value in (("a.png", 10), ("c.png", 200)):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), value, np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"broken")
    folder = open_background(str(tmp_path))
    assert isinstance(folder, FolderBackground) and folder.name == "a.png"
    notice = folder.step(1)
    assert notice is not None and "b.jpg" in notice
    assert folder.name == "c.png"
    shown = folder.render(np.zeros((40, 60, 3), np.uint8), 0.0)
    assert shown is not None and (shown == 200).all()
    folder.step(1)
    assert folder.name == "a.png"


class _StopsDecoding(Background):
    """A background video whose file breaks after ``good`` frames, as a real one can (a file on
    a network share that goes away): ``render`` then raises BackgroundError, as VideoBackground
    does when it cannot read on."""

    name = "beach.mp4"

    def __init__(self, good: int) -> None:
        self.good = good

    def render(self, frame: Frame, t: float, mask: Mask | None = None) -> Frame | None:
        if self.good == 0:
            raise BackgroundError(f"Background video '{self.name}' stopped decoding.")
        self.good -= 1
        return np.full_like(frame, 200)


@pytest.fixture
def warnings_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """caplog for vbg's warnings, also after a test that ran the command line (whose logging
    set-up stops vbg's messages from reaching the root logger, where caplog listens)."""
    monkeypatch.setattr(logging.getLogger("vbg"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="vbg")
    return caplog


def test_a_background_that_breaks_gives_way_to_the_one_before(
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    frame, mask = _photo_and_mask()
    _, outside, _ = _regions(mask)
    compositor = Compositor(ColorBackground((1, 2, 3)))
    compositor.set_background(_StopsDecoding(good=1))
    assert (compositor.composite(frame, mask, 0.0)[outside] == 200).all()
    assert not warnings_logged.records  # nothing to say while the video plays
    out = compositor.composite(frame, mask, 0.1)
    # The frame where it broke already shows the colour chosen before it, never an error.
    assert (out[outside] == (1, 2, 3)).all()
    assert compositor.background.name == "color:#030201"
    [record] = warnings_logged.records
    assert record.levelno == logging.WARNING and record.name == "vbg"
    assert record.getMessage() == (
        "Background video 'beach.mp4' stopped decoding. Showing color:#030201 instead."
    )


def test_a_background_that_breaks_first_gives_way_to_the_blur_not_the_room(
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    frame, mask = _photo_and_mask()
    _, outside, _ = _regions(mask)
    compositor = Compositor(_StopsDecoding(good=0))
    out = compositor.composite(frame, mask, 0.0)
    assert compositor.background.name == "blur"
    blurred = BlurBackground().render(frame, 0.0, mask)
    assert blurred is not None and np.array_equal(out[outside], blurred[outside])
    assert "stopped decoding. Showing blur instead." in warnings_logged.text


def test_bad_backgrounds(tmp_path: Path) -> None:
    with pytest.raises(BackgroundError, match="does not exist"):
        open_background(str(tmp_path / "beach.jpg"))
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(BackgroundError, match="not an image"):
        open_background(str(broken))
    with pytest.raises(BackgroundError, match="has no images"):
        open_background(str(_empty(tmp_path)))
    fake_video = tmp_path / "clip.mp4"
    fake_video.write_text("not a video")
    with pytest.raises(BackgroundError, match="cannot be decoded"):
        open_background(str(fake_video))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder
