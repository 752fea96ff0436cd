"""The room around the person on picture and colour backgrounds: glow and spill.

For each photo or video frame with a true person mask, vbg's composite (its frame path: model,
mask filters, guided upsampling, the compositor) is compared with the composite of the same frame
on the same background made with the true mask. The figure is the mean colour difference (mean
over B, G and R, in grey levels) in a band 1-15 px outside the true person, where the true
composite shows only the background, so any difference there is the room (or the person)
showing through. It comes in two parts that add up to it:

- **glow**: band pixels where vbg's mask is at most 0.5, the soft edge letting the room through
  (how steep the mask's edge is decides it);
- **spill**: band pixels where vbg's mask is above 0.5, the outline itself too wide (only a
  better mask fixes it).

Photos are each a first frame; video frames go through the frame path in order, as ``vbg eval``
does. Runs on the test data (benchmarks/common.py) with the MediaPipe models (their real
weights: vbg models fetch)::

    python benchmarks/halo.py [--data DIR] [--models M ...] [--backgrounds SPEC ...]
                              [--edge-contrast K ...] [--crop auto|on|off ...] [--json F]

A background SPEC is as ``--background`` takes it (``color:#00B140``, a picture's path); the
default is green and the test data's picture (benchmarks/common.py). Each edge contrast K is
measured as ``--edge-contrast K`` sets it: by default 1 (the model's own soft edge, vbg before
the steeper edge) and vbg's default; each ``--crop`` likewise (by default vbg's, auto).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import parse_args

from vbg.commands.evaluate import load_samples
from vbg.commands.frame_path import with_crop
from vbg.compositing.backgrounds import PassThrough, open_background
from vbg.compositing.compositor import Compositor, composite
from vbg.config import MODES, RunConfig
from vbg.images import Frame, Mask, to_mask
from vbg.mask_filters import EDGE_CONTRAST, MaskOptions
from vbg.processor import FrameProcessor
from vbg.segmentation.segmenter import Segmenter, load_segmenter

BAND = 15  # pixels: the band outside the true person that is measured
FPS = 24.0  # the video folders' frame rate (DAVIS)
GREEN = "color:#00B140"


def band(truth: np.ndarray, width: int = BAND) -> np.ndarray:
    """The pixels 1 to ``width`` px (Euclidean distance) outside the boolean mask ``truth``
    (H x W)."""
    distance = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    return (distance >= 1) & (distance <= width)


@dataclass(frozen=True)
class Parts:
    """One picture's figure: glow + spill = the mean colour difference over the band."""

    glow: float
    spill: float

    @property
    def total(self) -> float:
        return self.glow + self.spill


def parts(ours: Frame, theirs: Frame, mask: Mask, where: np.ndarray) -> Parts | None:
    """The colour difference (mean over B, G, R) of two composites (H x W x 3 uint8 BGR) on the
    pixels ``where`` (H x W bool), averaged over them and split by ``mask`` (vbg's, H x W
    float32): at most 0.5 is glow, above is spill. None when ``where`` is empty."""
    count = int(where.sum())
    if count == 0:
        return None
    difference = cv2.absdiff(ours, theirs)[where].astype(np.float32).mean(axis=1)
    soft = mask[where] <= 0.5
    return Parts(float(difference[soft].sum()) / count, float(difference[~soft].sum()) / count)


def masks(
    segmenter: Segmenter, options: MaskOptions, folder: Path, subset: str | None = None
) -> Iterator[tuple[float, Frame, np.ndarray, Mask]]:
    """(time, frame, true mask as H x W bool, vbg's H x W float32 mask) for each sample of a data
    folder, through vbg's frame path with the mask filters ``options`` (photos each a first
    frame, video frames in order)."""
    kind, samples = load_samples(folder, subset)
    processor = FrameProcessor(segmenter, Compositor(PassThrough()), options)
    for index, sample in enumerate(samples):
        if index == 0 or kind != "video":
            processor.reset()  # a new stream: nothing carries over (the crop's cut)
        frame = cv2.imread(str(sample.frame), cv2.IMREAD_COLOR)
        truth = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 127
        t = index / FPS
        matte = processor.process(frame, t).matte
        assert matte is not None
        mask = to_mask(matte)
        yield t, frame, truth, mask


def measure(
    segmenter: Segmenter,
    options: MaskOptions,
    folder: Path,
    backgrounds: Sequence[str],
    subset: str | None = None,
) -> dict[str, dict[str, float]]:
    """Mean glow, spill and total per background spec on a data folder (photos and frames
    weigh the same)."""
    found: dict[str, list[Parts]] = {spec: [] for spec in backgrounds}
    opened = {spec: open_background(spec) for spec in backgrounds}
    try:
        for t, frame, truth, mask in masks(segmenter, options, folder, subset):
            where = band(truth)
            for spec, background in opened.items():
                picture = background.render(frame, t, mask)
                assert picture is not None
                ours = Compositor(background).composite(frame, mask, t)
                theirs = composite(frame, truth.astype(np.float32), picture)
                figure = parts(ours, theirs, mask, where)
                if figure is not None:
                    found[spec].append(figure)
    finally:
        for background in opened.values():
            background.close()
    return {
        spec: {
            "glow": statistics.fmean(p.glow for p in values),
            "spill": statistics.fmean(p.spill for p in values),
            "total": statistics.fmean(p.total for p in values),
            "pictures": len(values),
        }
        for spec, values in found.items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models", nargs="*", default=["mediapipe_selfie", "mediapipe_selfie_landscape"]
    )
    parser.add_argument("--backgrounds", nargs="*", help="background specs; green and a picture")
    parser.add_argument(
        "--edge-contrast", nargs="*", type=float, default=[1.0, EDGE_CONTRAST],
        help=f"the edge contrasts to compare; 1 (the model's edge) and {EDGE_CONTRAST} (vbg's)",
    )  # fmt: skip
    parser.add_argument(
        "--crop", nargs="*", choices=MODES, default=["auto"],
        help="the crop settings to compare (as --crop); auto (vbg's)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args, data = parse_args(parser, argv)
    backgrounds = args.backgrounds or [GREEN, str(data.background_image)]
    sets = ((data.parkour, None), (data.coco, "prominent"))
    results: list[dict[str, Any]] = []
    for model, crop in itertools.product(args.models, args.crop):
        segmenter = with_crop(load_segmenter(model, weights=None, device="cpu"),
                              RunConfig(model=model, crop=crop))  # fmt: skip
        for (folder, subset), contrast in itertools.product(sets, args.edge_contrast):
            name = folder.name + (f" ({subset})" if subset else "")
            options = MaskOptions(edge_contrast=contrast)
            figures = measure(segmenter, options, folder, backgrounds, subset)
            for spec, row in figures.items():
                shown = spec if spec.startswith("color:") else Path(spec).name
                print(
                    f"{model:<27} crop {crop:<4} {name:<27} {shown:<14} edge {contrast:<4g} "
                    f"glow {row['glow']:5.2f}  spill {row['spill']:5.2f}  "
                    f"total {row['total']:5.2f}",
                    flush=True,
                )
                results.append({"model": model, "crop": crop, "data": name, "background": spec,
                                "edge_contrast": contrast, **row})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
