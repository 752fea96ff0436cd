"""``vbg bench`` on the test data, as the README's figures were measured: the clip of a woman
talking at a desk as the camera, her photo as the still scene (``--still``), and a picture and a
video as the compositor's backgrounds. Every other flag goes to ``vbg bench`` as it is:

    python benchmarks/vbg_bench.py [--data DIR] [--still] [vbg bench flags: --models M ...
        --seconds 10 --pipeline-models M ... --json F ...]
"""

from __future__ import annotations

import argparse
import sys

from common import parse_known_args

from vbg.commands.cli import main as vbg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--still", action="store_true", help="also a still scene as the camera")
    args, data, rest = parse_known_args(parser)
    inputs = ["--source", str(data.clip), "--background-image", str(data.background_image),
              "--background-video", str(data.background_video)]  # fmt: skip
    if args.still:
        inputs += ["--still", str(data.still)]
    return vbg(["bench", *inputs, *rest])


if __name__ == "__main__":
    sys.exit(main())
