"""What a webcam's pixel format costs vbg's capture thread per frame: the conversion OpenCV's
camera backends make to give a BGR frame, raw YUYV (4:2:2, cv2.cvtColor) against Motion-JPEG
(cv2.imdecode, libjpeg-turbo), at 1280x720 and 1920x1080. Why vbg asks a camera for its raw
format first and for MJPEG only where raw falls short of the rate (vbg/sources/capture.py).

No camera here: frames of the doctor clip stand in for the camera's picture, packed as YUYV
(4:2:2 as a camera sends it: webcam.to_yuyv) and encoded as JPEG at ``--quality`` (webcams send
roughly 80-90). CPU ms per frame on one thread (cv2.setNumThreads(1)), median of
``--rounds`` rounds in which the two take turns::

    python benchmarks/camera_formats.py [--data DIR] [--rounds 20] [--quality 85]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from common import parse_args
from webcam import to_yuyv

SIZES = ((1280, 720), (1920, 1080))


def _conversions(raw: list[np.ndarray], jpeg: list[np.ndarray]) -> dict[str, Callable[[], Any]]:
    return {
        "YUYV (cv2.cvtColor)": lambda: [cv2.cvtColor(r, cv2.COLOR_YUV2BGR_YUYV) for r in raw],
        "MJPEG (cv2.imdecode)": lambda: [cv2.imdecode(j, cv2.IMREAD_COLOR) for j in jpeg],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality of the stand-in")
    args, data = parse_args(parser)
    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(str(data.clip))
    frames: list[np.ndarray] = []
    while len(frames) < 10:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    print(f"Camera formats to BGR, CPU ms per frame on one thread (median of {args.rounds}):")
    for width, height in SIZES:
        scaled = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames]
        raw = [to_yuyv(f) for f in scaled]
        quality = [cv2.IMWRITE_JPEG_QUALITY, args.quality]
        jpeg = [cv2.imencode(".jpg", f, quality)[1] for f in scaled]
        error = max(
            float(np.abs(cv2.cvtColor(r, cv2.COLOR_YUV2BGR_YUYV).astype(int) - f).mean())
            for r, f in zip(raw, scaled, strict=True)
        )
        convert = _conversions(raw, jpeg)
        times: dict[str, list[float]] = {name: [] for name in convert}
        for _ in range(args.rounds):
            for name, run in convert.items():
                started = time.process_time()
                run()
                times[name].append(1000 * (time.process_time() - started) / len(frames))
        size = sum(len(j) for j in jpeg) / len(jpeg) / 1024
        print(f"  {width}x{height} (YUYV round trip {error:.2f} grey levels; JPEG {size:.0f} KiB)")
        for name, values in times.items():
            print(f"    {name:<22} {statistics.median(values):6.2f}")


if __name__ == "__main__":
    main()
