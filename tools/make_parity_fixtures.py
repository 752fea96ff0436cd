"""Make the reference masks that tests/test_mediapipe.py compares vbg's MediaPipe models with.

MediaPipe's own runtime (``mediapipe==0.10.14``, its ``mp.solutions.selfie_segmentation`` API,
run by benchmarks/common.py) segments a few photos of the test data, each on its own; each
probability mask is saved as a 16-bit PNG (value = round(p * 65535)) under
tests/fixtures/mediapipe/<model>/<photo stem>.png. MediaPipe lives in its own virtual
environment (it pulls opencv-contrib-python):

    python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install mediapipe==0.10.14
    python tools/make_parity_fixtures.py --mediapipe-python /tmp/mpenv/bin/python [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data's paths and MediaPipe's side
from common import MEDIAPIPE_SELECTION, mediapipe_masks, parse_args  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "mediapipe"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mediapipe-python", required=True, help="python of the mediapipe venv")
    args, data = parse_args(parser)
    photos = data.parity_photos
    for name in MEDIAPIPE_SELECTION:
        folder = FIXTURES / name
        folder.mkdir(parents=True, exist_ok=True)
        masks = mediapipe_masks(args.mediapipe_python, name, photos)
        for photo, mask in zip(photos, masks, strict=True):
            value = np.round(mask * 65535.0).astype(np.uint16)  # MediaPipe's 16-bit value again
            cv2.imwrite(str(folder / f"{photo.stem}.png"), value)
        print(f"{name}: {len(photos)} reference masks in {folder}")


if __name__ == "__main__":
    main()
