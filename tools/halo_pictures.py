"""The README's glow picture: the room around the person on a green background, before and after
vbg's steeper edge (``edge_contrast``), on a video frame and a photo.

Uses the mediapipe_selfie model (its real weights: vbg models fetch mediapipe_selfie) through
vbg's frame path with its defaults (the tracking crop; the video's frames in order, up to the one
shown) on the test data's webcam
clip (a white coat against a white wall) and its portrait (hair against the sky), see
benchmarks/common.py, and writes docs/halo.png: one row each, a zoom on a shoulder and on the
hair, ``edge_contrast = 1`` (the model's soft edge) on the left, vbg's on the right:

    python tools/halo_pictures.py [--data DIR] [--out docs/halo.png]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from vbg.commands.frame_path import with_crop
from vbg.compositing.backgrounds import open_background
from vbg.compositing.compositor import Compositor
from vbg.config import RunConfig
from vbg.images import Frame
from vbg.mask_filters import MaskOptions
from vbg.processor import FrameProcessor
from vbg.segmentation.segmenter import Segmenter, load_segmenter
from vbg.sources.capture import VideoFileSource

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data's paths
from common import parse_args  # noqa: E402
from montage import label  # noqa: E402

GREEN = "color:#00B140"
MODEL = "mediapipe_selfie"
SIZE = 160  # the zoomed crop, in frame pixels (shown 2.5 times as large)
FRAME = 300  # the clip's frame shown (12 s in), after every frame before it
SHOULDER = (790, 250)  # the clip's frame 300 (960 x 540): a shoulder against the white wall
HAIR = (640, 190)  # the portrait at 960 px wide: hair against the sky


def composites(segmenter: Segmenter, frames: Iterable[Frame]) -> tuple[Frame, Frame]:
    """The last of ``frames`` (each H x W x 3 uint8 BGR, in order) on green through vbg's frame
    path with the model's soft edge (``edge_contrast = 1``) and with vbg's."""
    processors = [  # each its own crop (it follows the masks it made), around the same model
        FrameProcessor(
            with_crop(segmenter, RunConfig(model=MODEL)),
            Compositor(open_background(GREEN)),
            options,
        )
        for options in (MaskOptions(edge_contrast=1.0), MaskOptions())
    ]
    outs = []
    for index, frame in enumerate(frames):
        outs = [processor.process(frame, index / 30.0).frame for processor in processors]
    return outs[0], outs[1]


def before_after(
    segmenter: Segmenter, frames: Iterable[Frame], name: str, at: tuple[int, int]
) -> np.ndarray:
    """One row: a zoom centred on ``at`` (x, y in frame pixels) on the model's soft edge and on
    vbg's (H x W x 3 uint8 BGR)."""
    before, after = composites(segmenter, frames)
    x0 = int(np.clip(at[0] - SIZE // 2, 0, before.shape[1] - SIZE))
    y0 = int(np.clip(at[1] - SIZE // 2, 0, before.shape[0] - SIZE))

    def zoom(image: Frame) -> Frame:
        crop = image[y0 : y0 + SIZE, x0 : x0 + SIZE]
        return cv2.resize(crop, (400, 400), interpolation=cv2.INTER_NEAREST)

    return np.hstack(
        [
            label(zoom(before), f"{name}: model's edge"),
            label(zoom(after), f"{name}: vbg's edge"),
        ]
    )


def clip_frames(path: Path, last: int) -> Iterator[Frame]:
    """The frames of the video file ``path`` up to index ``last``."""
    with VideoFileSource(path, realtime=False) as source:
        for _ in range(last + 1):
            frame = source.read()
            if frame is None:
                return
            yield frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "halo.png")
    args, data = parse_args(parser)
    segmenter = load_segmenter(MODEL, weights=None, device="cpu")
    photo = cv2.imread(str(data.portrait))
    photo = cv2.resize(photo, (960, round(photo.shape[0] * 960 / photo.shape[1])))
    rows = [
        before_after(segmenter, clip_frames(data.clip, FRAME), "white coat", SHOULDER),
        before_after(segmenter, [photo], "hair", HAIR),
    ]
    montage = np.vstack(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), montage)
    print(f"wrote {args.out} ({montage.shape[1]}x{montage.shape[0]})")


if __name__ == "__main__":
    main()
