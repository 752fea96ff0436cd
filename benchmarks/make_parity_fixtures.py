"""Make the reference masks that tests/test_mediapipe.py compares vbg's MediaPipe models with.

MediaPipe's own runtime (``mediapipe==0.10.14``, its ``mp.solutions.selfie_segmentation`` API)
segments a few photos from ../shared/data; each probability mask is saved as a 16-bit PNG
(value = round(p * 65535)) under tests/fixtures/mediapipe/<model>/<photo stem>.png. MediaPipe lives
in its own virtual environment (it pulls opencv-contrib-python):

    python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install mediapipe==0.10.14
    python benchmarks/make_parity_fixtures.py --mediapipe-python /tmp/mpenv/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "tests" / "fixtures" / "mediapipe"
PHOTOS = (
    "images/skimage_astronaut.png",
    "images/volcomix_doctor-5871743_640.jpg",
    "images/volcomix_woman-5883428_1280.jpg",
    "images_gt/coco128_person/images/000000000110.jpg",
    "images_gt/coco128_person/images/000000000436.jpg",
)
MODELS = {0: "mediapipe_selfie", 1: "mediapipe_selfie_landscape"}

# Runs in the MediaPipe environment. A new SelfieSegmentation per photo: no state between them.
MEDIAPIPE_SIDE = r"""
import sys
from pathlib import Path
import cv2, numpy as np, mediapipe as mp
selection, folder, photos = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
folder.mkdir(parents=True, exist_ok=True)
for photo in photos:
    rgb = cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB)
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as seg:
        mask = seg.process(rgb).segmentation_mask
    value = np.round(np.clip(mask, 0.0, 1.0) * 65535.0).astype(np.uint16)
    cv2.imwrite(str(folder / (Path(photo).stem + ".png")), value)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mediapipe-python", required=True, help="python of the mediapipe venv")
    args = parser.parse_args()
    photos = [str(DATA / photo) for photo in PHOTOS]
    for selection, name in MODELS.items():
        folder = FIXTURES / name
        command = [args.mediapipe_python, "-c", MEDIAPIPE_SIDE, str(selection), str(folder)]
        subprocess.run([*command, *photos], check=True, capture_output=True)
        print(f"{name}: {len(photos)} reference masks in {folder}")


if __name__ == "__main__":
    main()
