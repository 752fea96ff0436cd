"""The picture in the README: raw vs refined edges, plain vs mask-weighted blur, on a real photo.

Uses the mediapipe_selfie model (its real weights: vbg models fetch mediapipe_selfie) on a photo
(by default the test data's portrait, see benchmarks/common.py) and writes docs/mask_quality.png:

    python tools/montage.py [--photo PATH | --data DIR] [--out docs/mask_quality.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from vbg.compositing.backgrounds import BlurBackground, ColorBackground
from vbg.compositing.compositor import Compositor
from vbg.images import to_mask
from vbg.mask_filters import MaskRefiner
from vbg.segmentation.segmenter import load_segmenter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data's paths
from common import parse_args  # noqa: E402


def label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 34), (0, 0, 0), -1)
    cv2.putText(out, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photo", type=Path, help="the photo; the test data's portrait")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "mask_quality.png")
    args, data = parse_args(parser, unless="photo")
    frame = cv2.imread(str(args.photo or data.portrait))
    if frame.shape[1] > 960:
        frame = cv2.resize(frame, (960, round(frame.shape[0] * 960 / frame.shape[1])))
    segmenter = load_segmenter("mediapipe_selfie", weights=None, device="cpu")
    small = segmenter.predict(frame)
    raw = to_mask(MaskRefiner(guided=False).refine(small, frame))
    refined = to_mask(MaskRefiner(guided=True).refine(small, frame))
    # Crop around the strongest part of the person's edge (where the two masks differ most).
    edge = np.abs(refined - raw)
    y, x = np.unravel_index(np.argmax(cv2.blur(edge, (61, 61))), edge.shape)
    size = 160
    y0 = int(np.clip(y - size // 2, 0, frame.shape[0] - size))
    x0 = int(np.clip(x - size // 2, 0, frame.shape[1] - size))

    def zoom(image: np.ndarray) -> np.ndarray:
        crop = image[y0 : y0 + size, x0 : x0 + size]
        return cv2.resize(crop, (400, 400), interpolation=cv2.INTER_NEAREST)

    green = Compositor(ColorBackground((64, 177, 0)))
    row1 = [
        label(zoom(green.composite(frame, raw, 0.0)), "bilinear mask (raw)"),
        label(zoom(green.composite(frame, refined, 0.0)), "guided mask (vbg)"),
    ]
    plain = Compositor(BlurBackground(30, weighted=False)).composite(frame, refined, 0.0)
    weighted = Compositor(BlurBackground(30)).composite(frame, refined, 0.0)
    row2 = [
        label(zoom(plain), "plain blur: halo"),
        label(zoom(weighted), "mask-weighted blur (vbg)"),
    ]
    montage = np.vstack([np.hstack(row1), np.hstack(row2)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), montage)
    print(f"wrote {args.out} ({montage.shape[1]}x{montage.shape[0]}), crop at x={x0} y={y0}")


if __name__ == "__main__":
    main()
