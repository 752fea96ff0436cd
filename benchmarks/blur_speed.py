"""The blurred room (``blur``, mask-weighted, vbg's default background): CPU time per frame and
how far its picture moved, the blur before issue 14 against vbg's, in one run.

Speed: CPU milliseconds per 1280x720 frame on one thread (cv2.setNumThreads(1), process time,
so the other programs on the machine count less), median over ``--rounds`` rounds in which the
blur before, vbg's blur and the straightforward float32 NumPy blend (``vbg bench``'s yardstick)
take turns, each a frame of the doctor clip with a soft ellipse as the mask (as ``vbg bench``
composites). "composite" is the Compositor's whole frame (blur and blend), the figure ``vbg
bench`` prints as "1280x720 blur X ms"; the ratio is the NumPy blend's time over it.

Picture: on the frames of the test data's videos with true masks (parkour, dance-twirl, every
10th frame, scaled to 1280x720, the mask's edge softened as a model's is), the absolute
difference in grey levels of each blur against the exact mask-weighted blur at full size
(float32, the same rule where the person covers the neighbourhood) and against each other: over
the whole picture and as seen in the composite (weighted by 1 - mask: only the room shows)::

    python benchmarks/blur_speed.py [--data DIR] [--rounds 200] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
from common import parse_args

from vbg.commands.bench import numpy_blend
from vbg.compositing.backgrounds import DEFAULT_BLUR, BlurBackground
from vbg.compositing.compositor import Compositor
from vbg.images import Frame, Mask, to_matte

SIZE = (1280, 720)


class BlurBefore(BlurBackground):
    """The blur as it was before issue 14 (commit f49f683), kept to be measured against."""

    def render(self, frame: Frame, t: float, mask: Mask | None = None) -> Frame | None:
        height, width = frame.shape[:2]
        factor = max(1, int(self.strength / 4))
        size = (max(1, width // factor), max(1, height // factor))
        sigma = self.strength / factor
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        blurred = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma)
        if self.weighted and mask is not None:
            room = 1.0 - cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
            weight = cv2.GaussianBlur(room, (0, 0), sigmaX=sigma)
            spread = cv2.GaussianBlur(small.astype(np.float32) * room[..., None], (0, 0), sigma)
            trusted = weight > 0.02
            spread = spread / np.maximum(weight, 1e-6)[..., None]
            blurred = np.where(trusted[..., None], spread, blurred)
            blurred = np.clip(blurred + 0.5, 0, 255).astype(np.uint8)
        return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


def exact(frame: Frame, mask: Mask, strength: float = DEFAULT_BLUR) -> Frame:
    """The mask-weighted blur at full size in float32 (H x W x 3 uint8 BGR, H x W float32)."""
    room = 1.0 - mask
    weight = cv2.GaussianBlur(room, (0, 0), strength)
    spread = cv2.GaussianBlur(frame.astype(np.float32) * room[..., None], (0, 0), strength)
    plain = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), strength)
    out = np.where((weight > 0.02)[..., None], spread / np.maximum(weight, 1e-6)[..., None], plain)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cpu_ms(step: Callable[[], object]) -> float:
    started = time.process_time()
    step()
    return 1000 * (time.process_time() - started)


def speed(frame: Frame, rounds: int) -> dict[str, Any]:
    width, height = SIZE
    ellipse = np.zeros((height, width), np.float32)
    cv2.ellipse(ellipse, (width // 2, height), (width // 4, height * 3 // 4), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(ellipse, (0, 0), 4)
    matte = to_matte(mask)  # vbg's frame path hands the compositor its Matte
    backgrounds = {"before": BlurBefore(), "vbg": BlurBackground()}
    vbg = Compositor(backgrounds["vbg"])
    inverse = np.empty_like(mask)

    def composite_before() -> Frame:
        """The compositor's frame as it was before issue 14: the blur, then OpenCV's
        blendLinear with float32 weights (1 - mask into a reused buffer)."""
        blurred = backgrounds["before"].render(frame, 0.0, mask)
        assert blurred is not None
        np.subtract(1.0, mask, out=inverse)
        return cv2.blendLinear(frame, blurred, mask, inverse)

    steps: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "before": (lambda: backgrounds["before"].render(frame, 0.0, mask), composite_before),
        "vbg": (
            lambda: backgrounds["vbg"].render(frame, 0.0, matte),
            lambda: vbg.composite(frame, matte, 0.0),
        ),
    }
    picture = backgrounds["vbg"].render(frame, 0.0, matte)
    assert picture is not None
    times: dict[str, list[float]] = {}
    for _ in range(rounds):  # the candidates take turns, so a busy moment hits them all
        for name, (blur, composite) in steps.items():
            times.setdefault(f"{name} blur", []).append(cpu_ms(blur))
            times.setdefault(f"{name} composite", []).append(cpu_ms(composite))
        times.setdefault("numpy float32 blend", []).append(
            cpu_ms(lambda: numpy_blend(frame, mask, picture))
        )
    medians = {name: statistics.median(values) for name, values in times.items()}
    numpy_ms = medians["numpy float32 blend"]
    return {
        "ms": {name: round(value, 3) for name, value in medians.items()},
        "blur_before_over_vbg": round(medians["before blur"] / medians["vbg blur"], 2),
        "numpy_over_composite": {
            name: round(numpy_ms / medians[f"{name} composite"], 2) for name in backgrounds
        },
        "numpy_over_blur": {
            name: round(numpy_ms / medians[f"{name} blur"], 2) for name in backgrounds
        },
    }


def samples(data_root: Any) -> Iterator[tuple[Frame, Mask]]:
    for clip in ("parkour", "dance-twirl"):
        folder = data_root / "video_gt" / clip
        for path in sorted((folder / "frames").glob("*.jpg"))[::10]:
            frame = cv2.resize(cv2.imread(str(path)), SIZE, interpolation=cv2.INTER_LINEAR)
            truth = cv2.imread(str(folder / "masks" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE)
            mask = cv2.resize((truth > 127).astype(np.float32), SIZE)
            yield frame, cv2.GaussianBlur(mask, (0, 0), 4)  # a model's soft edge


def picture(data_root: Any) -> dict[str, Any]:
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for frame, mask in samples(data_root):
        before = BlurBefore().render(frame, 0.0, mask)
        ours = BlurBackground().render(frame, 0.0, mask)
        assert before is not None and ours is not None
        reference = exact(frame, mask)
        room = (1.0 - mask)[..., None]
        for name, a, b in (
            ("before vs exact", before, reference),
            ("vbg vs exact", ours, reference),
            ("vbg vs before", ours, before),
        ):
            difference = np.abs(a.astype(np.float32) - b)
            pairs.setdefault(name, []).append((difference, difference * room))
    figures = {}
    for name, values in pairs.items():
        whole = [d for d, _ in values]
        seen = [s for _, s in values]
        figures[name] = {
            "max": float(max(d.max() for d in whole)),
            "mean": round(float(np.mean([d.mean() for d in whole])), 3),
            "seen_max": round(float(max(s.max() for s in seen)), 2),
            "seen_mean": round(float(np.mean([s.mean() for s in seen])), 3),
            "seen_p99_9": round(float(np.percentile(np.concatenate(seen, axis=None), 99.9)), 2),
        }
    figures["frames"] = len(pairs["vbg vs exact"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", help="write the figures to this file")
    args, data = parse_args(parser)
    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(str(data.clip))
    ok, first = capture.read()
    capture.release()
    if not ok:
        parser.error(f"cannot read {data.clip}")
    frame = cv2.resize(first, SIZE, interpolation=cv2.INTER_AREA)
    result = {"speed": speed(frame, args.rounds), "picture": picture(data.root)}
    for name, value in result["speed"]["ms"].items():
        print(f"{name:22s} {value:7.2f} ms (CPU, one thread, median)")
    print("blur before / vbg's blur:", result["speed"]["blur_before_over_vbg"])
    print("NumPy blend / composite:", result["speed"]["numpy_over_composite"])
    print("NumPy blend / blur alone:", result["speed"]["numpy_over_blur"])
    for name, figures in result["picture"].items():
        print(f"{name:16s} {figures}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
