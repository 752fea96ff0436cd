"""Make the small committed test data in tests/fixtures/data from the full set in ../shared/data.

Run once from the repository root (the output is committed; rerun only to change it)::

    .venv/bin/python tools/make_test_fixtures.py [--data ../shared/data] [--out tests/fixtures/data]

Every pixel comes from Pixabay media (see tests/fixtures/data/README.md). The true masks are exact
by construction: a person is cut out of a Pixabay portrait once (OpenCV GrabCut from hand-placed
seed polygons, written below), and every composite takes exactly the pixels under that cut-out mask
from the portrait and all the others from a background photo, so the mask of the composite is the
cut-out mask, with no annotator in between. The output is deterministic (fixed RNG seed, fixed
encoders); the script checks what it wrote (decodes every file) and that the whole is under 3 MB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "data"
SIZE_LIMIT = 3 * 1024 * 1024  # bytes, the whole fixture folder

CLIP_SOURCE = ("videos", "volcomix_thoughtful-35590.mp4")  # 640x360, 29.97 fps, Pixabay
CLIP_SIZE = (320, 180)  # width, height
CLIP_FRAMES = 75  # 2.5 s at 29.97 fps, from the first frame

PHOTO_WIDTH = 320
VIDEO_SIZE = (256, 144)  # width, height
VIDEO_FRAMES = 24
JPEG_QUALITY = 92
BACKGROUND_SIZE = (480, 270)  # the pictures copied (downscaled) into backgrounds/

Point = tuple[float, float]  # (x, y) as fractions of the image's width and height
CutOut = tuple[np.ndarray, np.ndarray]  # H x W x 3 uint8 BGR, H x W bool (True = person)


@dataclass(frozen=True)
class Portrait:
    """A Pixabay portrait and the GrabCut seeds that cut its person out.

    ``outer`` encloses the whole person (outside it is sure background); inside it is probable
    person, and inside each of ``inner`` is sure person.
    """

    file: str
    outer: list[Point]
    inner: list[list[Point]]


# fmt: off
PORTRAITS = {
    "doctor": Portrait(
        "volcomix_doctor-5871743_640.jpg",
        outer=[(0.44, 0.12), (0.50, 0.06), (0.60, 0.07), (0.66, 0.14), (0.66, 0.40), (0.62, 0.47),
               (0.70, 0.52), (0.76, 0.62), (0.80, 0.78), (0.86, 0.92), (0.86, 1.0), (0.05, 1.0),
               (0.06, 0.88), (0.18, 0.70), (0.26, 0.56), (0.38, 0.47), (0.44, 0.42), (0.43, 0.30)],
        inner=[[(0.48, 0.17), (0.60, 0.17), (0.60, 0.40), (0.50, 0.42)],
               [(0.35, 0.62), (0.68, 0.62), (0.76, 0.95), (0.76, 1.0), (0.14, 1.0), (0.25, 0.75)]],
    ),
    "girl": Portrait(
        "volcomix_girl-919048_1280.jpg",
        outer=[(0.40, 0.10), (0.50, 0.05), (0.62, 0.09), (0.70, 0.25), (0.74, 0.50), (0.73, 0.72),
               (0.70, 0.78), (0.78, 0.82), (0.86, 0.92), (0.87, 1.0), (0.15, 1.0), (0.18, 0.90),
               (0.30, 0.80), (0.35, 0.74), (0.30, 0.60), (0.30, 0.40), (0.34, 0.22)],
        inner=[[(0.40, 0.15), (0.60, 0.15), (0.68, 0.45), (0.62, 0.72), (0.44, 0.72), (0.34, 0.50),
                (0.36, 0.25)],
               [(0.30, 0.88), (0.70, 0.88), (0.80, 1.0), (0.22, 1.0)]],
    ),
    "woman": Portrait(
        "volcomix_woman-5883428_1280.jpg",
        outer=[(0.0, 0.0), (0.12, 0.02), (0.18, 0.2), (0.22, 0.35), (0.30, 0.25), (0.40, 0.16),
               (0.52, 0.14), (0.62, 0.17), (0.68, 0.25), (0.72, 0.45), (0.72, 0.60), (0.64, 0.75),
               (0.64, 1.0), (0.0, 1.0)],
        inner=[[(0.0, 0.15), (0.08, 0.15), (0.16, 0.45), (0.28, 0.55), (0.20, 1.0), (0.0, 1.0)],
               [(0.42, 0.28), (0.62, 0.25), (0.64, 0.55), (0.46, 0.60)],
               [(0.22, 0.60), (0.40, 0.62), (0.56, 0.80), (0.58, 1.0), (0.25, 1.0)]],
    ),
}
# fmt: on

# Pixabay backgrounds (the Debian mate-backgrounds pictures are GPL-2+ and are not used).
BACKGROUNDS = {
    "architecture": "architecture-5082700_1280.jpg",
    "porch": "porch-691330_1280.jpg",
    "saxon": "saxon-switzerland-539418_1280.jpg",
    "shibuya": "shibuyasky-4768679_1280.jpg",
}

# photos/: (stem, [(portrait, scale, x offset as a fraction of the width)], background)
# A portrait is placed with its bottom edge on the photo's bottom edge (each person is cut by the
# bottom of the portrait, so the body carries on out of the frame, as in a real photo).
PHOTOS = [
    ("doctor_saxon", [("doctor", 1.0, 0.0)], "saxon"),
    ("girl_shibuya", [("girl", 1.0, 0.0)], "shibuya"),
    ("woman_porch", [("woman", 1.0, 0.0)], "porch"),
    ("two_architecture", [("doctor", 0.62, -0.22), ("girl", 0.7, 0.26)], "architecture"),
]


def read(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 BGR; exits with a message when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        sys.exit(f"cannot read {path}: is ../shared/data complete? (pass --data DIR)")
    return image


def resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` (H x W [x C]) scaled to ``width``, aspect kept, area-averaged."""
    height = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` (H x W x 3 BGR) scaled to cover width x height, centre-cropped, not stretched."""
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return scaled[top : top + height, left : left + width].copy()


def _polygon(mask: np.ndarray, points: list[Point], value: int) -> None:
    h, w = mask.shape
    corners = np.array([(round(x * (w - 1)), round(y * (h - 1))) for x, y in points], np.int32)
    cv2.fillPoly(mask, [corners], value)


def cut_out(image: np.ndarray, portrait: Portrait) -> np.ndarray:
    """The person's mask in ``image`` (H x W x 3 BGR): H x W bool, True = person.

    GrabCut from the portrait's seed polygons; then only the parts joined to a sure-person seed are
    kept, small holes inside the person are filled, and the rim is eroded by one pixel so that the
    cut-out carries as little of the portrait's own background as possible.
    """
    seeds = np.full(image.shape[:2], cv2.GC_BGD, np.uint8)
    _polygon(seeds, portrait.outer, cv2.GC_PR_FGD)
    for inner in portrait.inner:
        _polygon(seeds, inner, cv2.GC_FGD)
    sure = seeds == cv2.GC_FGD
    cv2.setRNGSeed(0)  # GrabCut's k-means start draws from OpenCV's RNG
    models = (np.zeros((1, 65)), np.zeros((1, 65)))
    cv2.grabCut(image, seeds, (0, 0, 0, 0), models[0], models[1], 10, cv2.GC_INIT_WITH_MASK)
    person = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)

    count, labels = cv2.connectedComponents(person, connectivity=8)
    keep = np.unique(labels[sure & (person > 0)])
    person = np.isin(labels, keep[keep > 0]).astype(np.uint8)

    count, labels, stats, _ = cv2.connectedComponentsWithStats(1 - person, connectivity=4)
    h, w = person.shape
    for label in range(1, count):
        x, y, bw, bh, area = stats[label]
        on_border = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not on_border and area < 0.002 * h * w:
            person[labels == label] = 1

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.erode(person, cross, borderType=cv2.BORDER_REPLICATE) > 0


def scaled(image: np.ndarray, mask: np.ndarray, scale: float) -> CutOut:
    """A cut-out (H x W x 3 BGR, H x W bool) scaled by ``scale``; the mask area-averaged, cut at 0.5

    The scaled mask is exact for the scaled image: the composite takes exactly its pixels.
    """
    if scale == 1.0:
        return image, mask
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    area = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return image, area >= 0.5


def paste(
    frame: np.ndarray, truth: np.ndarray, image: np.ndarray, mask: np.ndarray, centre: int, dy: int
) -> None:
    """Put a cut-out's person pixels into ``frame`` (H x W x 3 BGR) and mark them in ``truth``.

    The cut-out's bottom edge sits ``dy`` pixels below the frame's bottom edge and its centre at
    column ``centre``; what falls outside the frame is dropped.
    """
    fh, fw = truth.shape
    h, w = mask.shape
    top, left = fh - h + dy, centre - w // 2
    y0, y1, x0, x1 = max(top, 0), min(top + h, fh), max(left, 0), min(left + w, fw)
    if y0 >= y1 or x0 >= x1:
        return
    part = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    frame[y0:y1, x0:x1][part] = image[y0 - top : y1 - top, x0 - left : x1 - left][part]
    truth[y0:y1, x0:x1] |= part


def write_jpeg(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def write_mask(path: Path, truth: np.ndarray) -> None:
    cv2.imwrite(str(path), truth.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def make_photos(out: Path, people: dict[str, CutOut], backgrounds: dict[str, np.ndarray]) -> None:
    """photos/images/*.jpg and photos/masks/*.png (0/255): people over new backgrounds."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir(parents=True)
    for stem, placed, background in PHOTOS:
        first = people[placed[0][0]][0]
        frame = cover(backgrounds[background], first.shape[1], first.shape[0])
        truth = np.zeros(frame.shape[:2], bool)
        for name, scale, offset in placed:
            image, mask = scaled(people[name][0], people[name][1], scale)
            centre = frame.shape[1] // 2 + round(offset * frame.shape[1])
            paste(frame, truth, image, mask, centre, dy=0)
        write_jpeg(out / "images" / f"{stem}.jpg", frame)
        write_mask(out / "masks" / f"{stem}.png", truth)


def make_video(out: Path, people: dict[str, CutOut], backgrounds: dict[str, np.ndarray]) -> None:
    """video/frames/*.jpg and video/masks/*.png: a person walking across and towards the camera.

    The girl's cut-out moves from left of centre to right of centre, grows from 80% to 95% of the
    frame height, and bobs a few pixels, over a still porch (the camera does not move).
    """
    (out / "frames").mkdir(parents=True)
    (out / "masks").mkdir(parents=True)
    width, height = VIDEO_SIZE
    still = cover(backgrounds["porch"], width, height)
    image, mask = people["girl"]
    for index in range(VIDEO_FRAMES):
        t = index / (VIDEO_FRAMES - 1)
        scale = (0.80 + 0.15 * t) * height / image.shape[0]
        person, part = scaled(image, mask, scale)
        centre = round(width * (0.30 + 0.40 * t))
        dy = round(3 * (1 - np.cos(2 * np.pi * 3 * t)))  # 0..6 px down, three steps
        frame, truth = still.copy(), np.zeros((height, width), bool)
        paste(frame, truth, person, part, centre, dy)
        write_jpeg(out / "frames" / f"{index:05d}.jpg", frame)
        write_mask(out / "masks" / f"{index:05d}.png", truth)


def make_clip(path: Path, source: Path) -> None:
    """The first CLIP_FRAMES frames of ``source``, scaled to CLIP_SIZE, as MPEG-4 Part 2 (mp4v)."""
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        sys.exit(f"cannot open {source}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, CLIP_SIZE)
    if not writer.isOpened():
        sys.exit(f"OpenCV cannot write mp4v to {path}")
    for _ in range(CLIP_FRAMES):
        ok, frame = capture.read()
        if not ok:
            sys.exit(f"{source} has fewer than {CLIP_FRAMES} frames")
        writer.write(cv2.resize(frame, CLIP_SIZE, interpolation=cv2.INTER_AREA))
    writer.release()
    capture.release()


def check(out: Path) -> None:
    """Decode everything written and check sizes, mask values and stems; exits on a fault."""
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if frame.shape != (CLIP_SIZE[1], CLIP_SIZE[0], 3):
            sys.exit(f"clip.mp4 frame {count} is {frame.shape}")
        count += 1
    capture.release()
    if count != CLIP_FRAMES:
        sys.exit(f"clip.mp4 decodes to {count} frames, not {CLIP_FRAMES}")
    for folder, images in (("photos", "images"), ("video", "frames")):
        pictures = sorted((out / folder / images).iterdir())
        masks = sorted((out / folder / "masks").iterdir())
        if [p.stem for p in pictures] != [m.stem for m in masks]:
            sys.exit(f"{folder}: the stems of {images}/ and masks/ differ")
        for picture, mask_path in zip(pictures, masks, strict=True):
            image = cv2.imread(str(picture), cv2.IMREAD_COLOR)
            mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
            if image is None or mask is None or mask.shape != image.shape[:2]:
                sys.exit(f"{picture} and {mask_path} do not decode to matching sizes")
            if not set(np.unique(mask).tolist()) <= {0, 255} or not 0.05 < (mask > 0).mean() < 0.8:
                sys.exit(f"{mask_path} is not a 0/255 mask with a person in it")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if total > SIZE_LIMIT:
        sys.exit(f"{out} holds {total} bytes, over the {SIZE_LIMIT} limit")
    print(f"{out}: {total / 1024:.0f} KiB in {sum(1 for p in out.rglob('*') if p.is_file())} files")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the full data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the fixtures go")
    args = parser.parse_args(argv)
    data, out = args.data, args.out

    people: dict[str, CutOut] = {}
    for name, portrait in PORTRAITS.items():
        image = resize_to_width(read(data / "images" / portrait.file), PHOTO_WIDTH)
        people[name] = (image, cut_out(image, portrait))
    backgrounds = {name: read(data / "backgrounds" / file) for name, file in BACKGROUNDS.items()}

    # Only the generated folders are replaced: README.md is kept.
    for generated in ("photos", "video", "backgrounds", "clip.mp4"):
        target = out / generated
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)

    make_clip(out / "clip.mp4", data.joinpath(*CLIP_SOURCE))
    make_photos(out / "photos", people, backgrounds)
    make_video(out / "video", people, backgrounds)
    (out / "backgrounds").mkdir()
    for name in ("saxon", "architecture"):
        file = BACKGROUNDS[name]
        write_jpeg(out / "backgrounds" / file, cover(backgrounds[name], *BACKGROUND_SIZE))
    check(out)


if __name__ == "__main__":
    main()
