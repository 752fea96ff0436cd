"""What the benchmarks (and the generators in tools/) share, so that each is said once:

- where the test data is: ``../shared/data`` beside the checkout, or ``--data DIR``, or
  ``$VBG_DATA`` (see that folder's README for its sources), and which of its files they use;
- the live pipeline as ``vbg bench`` runs it, for the long runs, and ``vbg eval``'s scoring
  with chosen mask filters;
- the one script that runs MediaPipe's own runtime (``mediapipe==0.10.14``), in the virtual
  environment of its own that MediaPipe needs (it pulls opencv-contrib-python)::

      python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install mediapipe==0.10.14

Nothing in ``vbg/`` knows these file names: the product takes its inputs as arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import site
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vbg.commands.bench import live_processor
from vbg.commands.evaluate import evaluate
from vbg.compositing.backgrounds import PassThrough
from vbg.compositing.compositor import Compositor
from vbg.mask_filters import MaskOptions
from vbg.outputs.sinks import Sink
from vbg.pipeline import Pipeline
from vbg.processor import FrameProcessor
from vbg.segmentation.segmenter import Segmenter
from vbg.sources.capture import Source
from vbg.stats import Stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"

# MediaPipe's model_selection for each of vbg's MediaPipe models.
MEDIAPIPE_SELECTION = {"mediapipe_selfie": 0, "mediapipe_selfie_landscape": 1}

# What a program run by run_in_checkout does first: vbg from the checkout (argv[1]) and this
# environment's packages (argv[2], appended without their .pth files), then its own arguments.
_IN_CHECKOUT = """import sys
sys.path.insert(0, sys.argv[1])
sys.path.append(sys.argv[2])
del sys.argv[1:3]
"""


def run_in_checkout(tree: Path, code: str, *args: str) -> Any:
    """Run ``code`` (a Python program that prints JSON on its last line) in a fresh process that
    imports vbg from checkout ``tree`` with this environment's other packages: ``python -S``, so
    the editable install (this checkout) does not win. ``code`` gets ``args`` as
    ``sys.argv[1:]``. Returns the JSON; raises RuntimeError with the end of the child's stderr
    if it fails."""
    packages = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    command = [sys.executable, "-S", "-c", _IN_CHECKOUT + code, str(tree.resolve()), packages,
               *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Data:
    """The files of the test data folder that the benchmarks use."""

    root: Path

    @property
    def clip(self) -> Path:
        """The "moving" webcam scene: a woman talking at a desk (``vbg bench --source``)."""
        return self.root / "videos" / "volcomix_doctor-26732.mp4"

    @property
    def still(self) -> Path:
        """The still scene: a photo of the same woman (``vbg bench --still``)."""
        return self.root / "images" / "volcomix_doctor-5871743_640.jpg"

    @property
    def background_image(self) -> Path:
        return self.root / "backgrounds" / "mate_Dune.jpg"

    @property
    def background_video(self) -> Path:
        """A man sitting outdoors, 640x360."""
        return self.root / "videos" / "volcomix_thoughtful-35590.mp4"

    @property
    def portrait(self) -> Path:
        """A portrait with hair against the sky: the README's edge picture (tools/montage.py)."""
        return self.root / "images" / "volcomix_woman-5883428_1280.jpg"

    @property
    def parkour(self) -> Path:
        """A fast runner, a panning camera, true masks per frame (``vbg eval --data``)."""
        return self.root / "video_gt" / "parkour"

    @property
    def coco(self) -> Path:
        """COCO photos with people, true masks; subset ``prominent`` (``vbg eval --data``)."""
        return self.root / "images_gt" / "coco128_person"

    @property
    def parity_photos(self) -> tuple[Path, ...]:
        """The photos of the MediaPipe parity fixtures (tests/fixtures/mediapipe)."""
        return (
            self.root / "images" / "skimage_astronaut.png",
            self.still,
            self.portrait,
            self.coco / "images" / "000000000110.jpg",
            self.coco / "images" / "000000000436.jpg",
        )


def _add_data_flag(parser: argparse.ArgumentParser) -> None:
    default = Path(os.environ.get("VBG_DATA") or DEFAULT_DATA)
    parser.add_argument(
        "--data", type=Path, default=default,
        help=f"the test data folder ($VBG_DATA, else ../shared/data); {default}",
    )  # fmt: skip


def _checked(parser: argparse.ArgumentParser, folder: Path) -> Data:
    if not folder.is_dir():
        parser.error(f"the test data folder {folder} is absent: pass --data DIR or set VBG_DATA")
    return Data(folder)


def parse_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    unless: str | None = None,
) -> tuple[argparse.Namespace, Data]:
    """Parse the command line with ``--data`` added; the folder must exist, except when the
    argument named ``unless`` is given (it replaces the data the command would use)."""
    _add_data_flag(parser)
    args = parser.parse_args(argv)
    if unless is not None and getattr(args, unless) is not None:
        return args, Data(args.data)
    return args, _checked(parser, args.data)


def parse_known_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, Data, list[str]]:
    """As :func:`parse_args`, and the arguments the parser does not know, to pass on."""
    _add_data_flag(parser)
    args, rest = parser.parse_known_args(argv)
    return args, _checked(parser, args.data), rest


def live_pipeline(
    source: Source, segmenter: Segmenter, sinks: list[Sink], *, frames: int, stats: Stats
) -> Pipeline:
    """The live pipeline as ``vbg bench`` runs it (its frame path: blur background, vbg's mask
    filters, still scenes not segmented again) into ``sinks``, to stop after ``frames`` output
    frames; not started. The one place the benchmarks build one."""
    return Pipeline(source, live_processor(segmenter), sinks, max_frames=frames, stats=stats)


def evaluate_with(
    segmenter: Segmenter, options: MaskOptions, folder: Path, **replay: Any
) -> dict[str, Any]:
    """``vbg eval``'s scores of ``segmenter`` with the mask filters ``options`` on a data folder
    (``subset``, ``replay_fps``, ``latency_ms`` as :func:`vbg.commands.evaluate.evaluate`)."""
    return evaluate(FrameProcessor(segmenter, Compositor(PassThrough()), options), folder, **replay)


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


# Runs in the MediaPipe environment; argv[1] is a JSON job (see _run_mediapipe). Each mask is
# written as a 16-bit PNG (value = round(p * 65535)); the times are of process() alone, wall
# clock ("ms") and the process's CPU time over all its threads ("cpu_ms").
MEDIAPIPE_SIDE = r"""
import json, sys, time
import cv2, numpy as np, mediapipe as mp
job = json.loads(sys.argv[1])
Segmentation = mp.solutions.selfie_segmentation.SelfieSegmentation
frames = np.load(job["frames"]) if job["frames"] else (cv2.imread(p) for p in job["images"])
shared = None if job["fresh"] else Segmentation(model_selection=job["selection"])
times, cpu = [], []
for i, frame in enumerate(frames):
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    segmentation = Segmentation(model_selection=job["selection"]) if job["fresh"] else shared
    started, cpu_started = time.perf_counter(), time.process_time()
    mask = segmentation.process(rgb).segmentation_mask
    times.append(1000 * (time.perf_counter() - started))
    cpu.append(1000 * (time.process_time() - cpu_started))
    if job["fresh"]:
        segmentation.close()
    if job["out"]:
        value = np.round(np.clip(mask, 0.0, 1.0) * 65535.0).astype(np.uint16)
        cv2.imwrite(f"{job['out']}/{i:05d}.png", value)
if shared is not None:
    shared.close()
print(json.dumps({"ms": times, "cpu_ms": cpu}))
"""


def _run_mediapipe(python: str, job: dict[str, Any]) -> dict[str, list[float]]:
    """Run MEDIAPIPE_SIDE with ``python`` (of the MediaPipe environment) on ``job``: selection,
    frames (a .npy file) or images (paths), fresh (a new SelfieSegmentation per image), out (a
    folder for the masks, or None). Returns the milliseconds of each process() call: "ms" (wall
    clock) and "cpu_ms" (CPU time of the process, all threads)."""
    side = subprocess.run(
        [python, "-c", MEDIAPIPE_SIDE, json.dumps(job)], capture_output=True, text=True
    )
    if side.returncode != 0:
        raise RuntimeError(f"MediaPipe's side failed ({python}):\n{side.stderr.strip()}")
    return json.loads(side.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def mediapipe_masks(python: str, model: str, images: Sequence[Path]) -> list[np.ndarray]:
    """MediaPipe's own mask of each picture, each segmented on its own (a new
    SelfieSegmentation per picture: no state between them): H x W float32 in [0, 1] at the
    picture's size, exact to 1/65535 (``round(mask * 65535)`` gives MediaPipe's 16-bit value)."""
    with tempfile.TemporaryDirectory() as out:
        job = {"selection": MEDIAPIPE_SELECTION[model], "frames": None,
               "images": [str(path) for path in images], "fresh": True, "out": out}  # fmt: skip
        _run_mediapipe(python, job)
        masks = []
        for i, image in enumerate(images):
            value = cv2.imread(f"{out}/{i:05d}.png", cv2.IMREAD_UNCHANGED)
            if value is None:
                raise RuntimeError(f"MediaPipe's side wrote no mask for {image}")
            masks.append(value.astype(np.float32) / 65535.0)
        return masks


def mediapipe_ms(
    python: str, model: str, frames: np.ndarray, warmup: int = 5
) -> tuple[float, float]:
    """Median milliseconds of MediaPipe's SelfieSegmentation.process per frame, wall clock and CPU
    time, one instance over ``frames`` (N x H x W x 3 uint8 BGR) as for a camera; the first
    ``warmup`` not counted."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frames.npy"
        np.save(path, frames)
        job = {"selection": MEDIAPIPE_SELECTION[model], "frames": str(path), "images": [],
               "fresh": False, "out": None}  # fmt: skip
        times = _run_mediapipe(python, job)
        return statistics.median(times["ms"][warmup:]), statistics.median(times["cpu_ms"][warmup:])
