"""``vbg eval``: how good the masks are, on photos or a video with true person masks.

A data folder holds ``images/`` and ``masks/`` (photos) or ``frames/`` and ``masks/`` (a video, in
file-name order), with matching file stems; masks are 0 (background) / 255 (person).
Scores, each of the mask that ``vbg run`` composites the frame with (the same frame path,
:class:`vbg.processor.FrameProcessor`, with the same options: preprocessing, model, temporal
smoothing and flow propagation for videos, guided upsampling to the frame):

- **IoU** of the mask thresholded at 0.5 with the truth, per frame (mean and median);
- **boundary F** (the DAVIS contour measure): precision and recall of the mask's boundary pixels
  against the true boundary, matched within ``0.008 x`` the image diagonal, as DAVIS does;
- **MAE**: mean absolute error of the soft mask against the 0/1 truth;
- **dtSSD** (videos): temporal consistency as Robust Video Matting defines it,
  ``100 * sqrt(mean(((p_t - p_t-1) - (g_t - g_t-1))^2))`` averaged over frames; lower is steadier.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vbg.errors import ConfigError, SourceError
from vbg.images import IMAGE_SUFFIXES, Frame, Mask, grey, to_mask
from vbg.mask_filters import FlowPropagator, Keyframe, flow_size, remap
from vbg.pipeline import SyncPolicy
from vbg.processor import FrameProcessor
from vbg.sources.capture import VideoFileSource

RECENT_FRAMES = 256  # replay: how far back (frames) a model may still start
BOUNDARY_FRACTION = 0.008  # DAVIS: boundary tolerance as a fraction of the image diagonal
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


# -- the measures ----------------------------------------------------------------------------


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(prediction, truth).sum()
    return float(np.logical_and(prediction, truth).sum() / union) if union else 1.0


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels that have a 4-neighbour outside it (the image edge does not count)."""
    mask8 = mask.astype(np.uint8)
    eroded = cv2.erode(mask8, _CROSS, borderType=cv2.BORDER_REPLICATE)
    return (mask8 > 0) & (eroded == 0)


def boundary_f(prediction: np.ndarray, truth: np.ndarray, tolerance: int | None = None) -> float:
    """DAVIS's boundary F-measure of two boolean masks.

    ``tolerance``: how far (pixels) a boundary pixel may be from the other boundary and still
    match; by default ``ceil(0.008 * diagonal)``.
    """
    if tolerance is None:
        tolerance = int(np.ceil(BOUNDARY_FRACTION * np.hypot(*truth.shape[:2])))
    ours, theirs = boundary(prediction), boundary(truth)
    n_ours, n_theirs = int(ours.sum()), int(theirs.sum())
    if n_ours == 0 or n_theirs == 0:
        return 1.0 if n_ours == n_theirs else 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    near_ours = cv2.dilate(ours.astype(np.uint8), disk) > 0
    near_theirs = cv2.dilate(theirs.astype(np.uint8), disk) > 0
    precision = (ours & near_theirs).sum() / n_ours
    recall = (theirs & near_ours).sum() / n_theirs
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def mae(soft: Mask, truth: np.ndarray) -> float:
    """Mean absolute error of a soft mask (float in [0, 1]) against a boolean truth."""
    return float(np.abs(soft - truth.astype(np.float32)).mean())


def dtssd(soft: Mask, previous: Mask, truth: np.ndarray, previous_truth: np.ndarray) -> float:
    """Robust Video Matting's dtSSD between two consecutive frames (x 100)."""
    change = (soft - previous) - (truth.astype(np.float32) - previous_truth.astype(np.float32))
    return float(np.sqrt(np.mean(change**2)) * 100.0)


FLICKER_WIDTH = 320  # masks and frames are compared this wide (or less) for the flicker figure
STILL_LEVEL = 3.0  # grey levels: a pixel whose picture changed less than this counts as still
# The flicker figure's own optical flow: fixed here, never the smoothing's (a change to the
# smoothing's flow must not move the ruler it is measured with).
FLICKER_FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM


class FlickerMeter:
    """Flicker without true masks: how much the mask changes, between consecutive frames, where
    the picture did not (x 100, the mean absolute change on those pixels). The frame before and
    its mask are first moved along the optical flow to the frame now, so a moving camera or a
    moving person counts as still where the picture only moved; what is left is the mask
    changing on its own, which is what a viewer sees as flicker. Its flow is DIS with
    :data:`FLICKER_FLOW_PRESET`'s settings whatever the smoothing's flow is."""

    def __init__(self) -> None:
        self._flow = FlowPropagator(FLICKER_FLOW_PRESET)
        self._previous: tuple[np.ndarray, Mask] | None = None
        self.values: list[float] = []

    def add(self, frame: Frame, mask: Mask) -> float | None:
        """Take the next frame (H x W x 3 uint8 BGR) and its mask (H x W float32); returns this
        step's flicker (None for the first frame, or when no pixel was still)."""
        size = flow_size(frame, FLICKER_WIDTH)
        now_grey = grey(frame, *size)
        now_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        previous, self._previous = self._previous, (now_grey, now_mask)
        if previous is None:
            return None
        maps = self._flow.maps(now_grey, previous[0])
        moved_grey, moved_mask = remap(previous[0], maps), remap(previous[1], maps)
        change = cv2.absdiff(cv2.blur(now_grey, (3, 3)), cv2.blur(moved_grey, (3, 3)))
        still = change < STILL_LEVEL
        if not still.any():
            return None
        value = float(np.abs(now_mask - moved_mask)[still].mean() * 100.0)
        self.values.append(value)
        return value

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else 0.0


# -- the data --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    stem: str
    frame: Path
    mask: Path


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def load_samples(folder: Path, subset: str | None = None) -> tuple[str, list[Sample]]:
    """("images" or "video", the samples in order) from a data folder.

    ``subset`` names a column of ``folder/stats.csv`` (with an ``id`` column of stems); only the
    rows where it is 1 are kept, as for coco128_person's ``prominent`` photos.
    """
    if not folder.is_dir():
        raise SourceError(f"Data folder '{folder}' does not exist.")
    kind = "video" if (folder / "frames").is_dir() else "images"
    frames_dir, masks_dir = folder / ("frames" if kind == "video" else "images"), folder / "masks"
    if not frames_dir.is_dir() or not masks_dir.is_dir():
        raise SourceError(
            f"Data folder '{folder}' needs images/ and masks/ (photos) or frames/ and masks/ "
            "(a video) with matching file names."
        )
    frames, masks = _images_in(frames_dir), _images_in(masks_dir)
    stems = [stem for stem in frames if stem in masks]
    if subset:
        chosen = _subset(folder, subset)
        stems = [stem for stem in stems if stem in chosen]
    if not stems:
        raise SourceError(f"Data folder '{folder}' has no frame with a mask of the same name.")
    return kind, [Sample(stem, frames[stem], masks[stem]) for stem in stems]


def _subset(folder: Path, column: str) -> set[str]:
    table = folder / "stats.csv"
    if not table.is_file():
        raise SourceError(f"--subset needs '{table}' with an 'id' column and a '{column}' column.")
    with table.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or column not in rows[0]:
        raise SourceError(f"'{table}' has no column '{column}'.")
    return {row["id"] for row in rows if row[column].strip() not in ("", "0", "false", "False")}


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise SourceError(f"'{path}' cannot be decoded as an image.")
    return image


# -- the evaluation --------------------------------------------------------------------------


def _score(
    soft: Mask, truth: np.ndarray, previous: tuple[Mask, np.ndarray] | None
) -> dict[str, Any]:
    hard = soft > 0.5
    row: dict[str, Any] = {
        "iou": iou(hard, truth),
        "boundary_f": boundary_f(hard, truth),
        "mae": mae(soft, truth),
    }
    if previous is not None:
        row["dtssd"] = dtssd(soft, previous[0], truth, previous[1])
    return row


def check_replay(
    folder: Path, subset: str | None, replay_fps: float, latency_ms: float
) -> tuple[str, list[Sample]]:
    """The data folder's samples (see :func:`load_samples`), once the replay options are known to
    fit it: ``replay_fps`` replays a video, ``latency_ms`` needs ``replay_fps``, both 0 or more.
    Raises :class:`ConfigError` otherwise (before any model is loaded, by the command)."""
    if not (replay_fps >= 0 and latency_ms >= 0):  # NaN fails too
        raise ConfigError("--replay-fps and --latency-ms must be 0 or more.")
    if latency_ms and not replay_fps:
        raise ConfigError("--latency-ms is the replayed model's time per mask: give --replay-fps.")
    if folder.is_file():
        if replay_fps or subset:
            raise ConfigError(
                f"'{folder}' is a video file: vbg eval measures its flicker only (no true masks); "
                "--replay-fps and --subset need a data folder."
            )
        return "clip", []
    kind, samples = load_samples(folder, subset)
    if replay_fps and kind != "video":
        raise ConfigError(
            f"--replay-fps replays a video as a camera, and '{folder}' holds photos "
            "(images/ and masks/); leave it out for photos."
        )
    return kind, samples


@dataclasses.dataclass(frozen=True)
class _Run:
    """One run of the replayed model: on frame ``frame``, done at ``done_at`` (seconds of the
    replayed camera) after ``seconds``, with a new ``keyframe`` or None (no new mask)."""

    done_at: float
    frame: int
    keyframe: Keyframe | None
    seconds: float


class _ReplayedModel:
    """``vbg run``'s model thread, replayed: a video's frames arrive as a camera's, ``fps`` a
    second, and each model run takes ``latency`` seconds (0: as long as it really took). When it
    is free, the model starts on the newest frame it has not seen yet, or waits for the next one,
    as the live pipeline's model thread does; each run's time goes to ``policy`` when it ends, as
    it does live, so that :meth:`SyncPolicy.wait_limit` holds frames as ``vbg run`` does."""

    def __init__(
        self, processor: FrameProcessor, fps: float, latency: float, policy: SyncPolicy
    ) -> None:
        self.processor = processor
        self.fps = fps
        self.latency = latency
        self.policy = policy
        self.keyframe: Keyframe | None = None  # the newest one finished
        self.masks = 0  # runs that made a mask
        self.seconds = 0.0  # their real time
        self._frames: dict[int, Frame] = {}  # the frames the model may still start on
        self._run: _Run | None = None  # the run going on
        self._free_at = 0.0  # when the model ended its last run
        self._last_start = -1  # the frame it last started on

    def arrive(self, index: int, frame: Frame) -> None:
        """Frame ``index`` (H x W x 3 uint8 BGR) arrives from the camera, at ``index / fps``."""
        self._frames[index] = frame
        self._frames.pop(index - RECENT_FRAMES, None)

    def run_until(self, index: int, until: float) -> float | None:
        """Let the model work until time ``until`` (seconds), with frames up to ``index`` arrived,
        or until it is done with frame ``index``; returns when it was done with it (None: not
        by ``until``)."""
        while True:
            run = self._run or self._start_next(index)
            if run is None:
                return None  # it waits for the next frame
            if run.done_at > until + 1e-9:
                return None
            self._run, self._free_at = None, run.done_at
            if run.keyframe is not None:
                self.keyframe = run.keyframe
                self.policy.observe(run.seconds)
            if run.frame == index:
                return run.done_at

    def _start_next(self, index: int) -> _Run | None:
        """Start a run on the newest frame the model has not seen, once it is free, and return
        it; None when it has seen frame ``index``, the newest that has arrived."""
        newest = min(index, int(self._free_at * self.fps + 1e-9))
        start = max(newest, self._last_start + 1)  # a frame it has not seen, as live
        if start > index:
            return None
        start_at = start / self.fps
        started = time.perf_counter()
        fresh = self.processor.keyframe(self._frames[start], start_at)
        took = time.perf_counter() - started
        if fresh is not None:
            self.masks += 1
            self.seconds += took
        seconds = self.latency or took
        self._run = _Run(max(self._free_at, start_at) + seconds, start, fresh, seconds)
        self._last_start = start
        return self._run


def _replay_frame(model: _ReplayedModel, index: int, frame: Frame) -> float | None:
    """Frame ``index`` (H x W x 3 uint8 BGR) arrives, and is shown as ``vbg run``'s compositor
    shows it: held until the model is done with it, within the sync policy's bound (see
    :class:`vbg.pipeline.SyncPolicy`), then with the newest finished keyframe
    (``model.keyframe``). Returns how long it was held (seconds; None: it was not held)."""
    now = index / model.fps
    model.arrive(index, frame)
    done_at = model.run_until(index, now)  # the runs that ended before it came
    limit = model.policy.wait_limit()
    if limit <= 0:
        return None
    if done_at is None:
        done_at = model.run_until(index, now + limit)
    return limit if done_at is None else done_at - now


def _timed_keyframe(
    processor: FrameProcessor, frame: Frame, t: float
) -> tuple[Keyframe | None, float]:
    """The processor's keyframe for ``frame`` (H x W x 3 uint8 BGR) at ``t`` (None: no new mask)
    and the seconds it took."""
    started = time.perf_counter()
    return processor.keyframe(frame, t), time.perf_counter() - started


def evaluate(
    processor: FrameProcessor,
    folder: Path,
    *,
    subset: str | None = None,
    replay_fps: float = 0.0,
    latency_ms: float = 0.0,
    sync: str = "auto",
) -> dict[str, Any]:
    """Score the masks of ``processor`` (the frame path ``vbg run`` uses, with its mask filters)
    on a data folder; returns the summary and per-frame scores.

    Photos are each a first frame (a new stream: :meth:`FrameProcessor.reset`). Video frames go
    through the frame path in order. With ``replay_fps``, the video is replayed as a camera at that
    rate with a model that takes ``latency_ms`` (0: the model's measured time) per mask, scheduled
    as the live pipeline's model thread is: when it is done it starts on the newest frame, or waits
    for the next one if it has already seen the newest. Each frame is scored with the mask a viewer
    would see with it then: with ``sync`` (``"auto"``, ``"on"``, ``"off"``, as ``vbg run``'s, see
    :class:`vbg.pipeline.SyncPolicy`) held for its own mask within the bound, else the newest
    finished mask, moved along the optical flow when the options say so. Frames before the first
    mask are not scored.

    Raises :class:`ConfigError` for ``replay_fps`` on photos and ``latency_ms`` without it.
    """
    kind, samples = check_replay(folder, subset, replay_fps, latency_ms)
    policy = SyncPolicy(sync, replay_fps or 1.0)
    model = _ReplayedModel(processor, replay_fps, latency_ms / 1000.0, policy)
    rows: list[dict[str, Any]] = []
    previous: tuple[Mask, np.ndarray] | None = None
    seconds, masks = 0.0, 0  # the model's time and masks without a replay
    keyframe: Keyframe | None = None
    held: list[float] = []  # replay: how long each held frame was held (s)
    own = 0  # frames scored with their own mask
    flicker = FlickerMeter()
    for index, sample in enumerate(samples):
        if kind != "video":  # every photo is a first frame: a new stream (see README)
            processor.reset()
            keyframe = None
        frame = _read(sample.frame, cv2.IMREAD_COLOR)
        truth = _read(sample.mask, cv2.IMREAD_GRAYSCALE) > 127
        now = index / replay_fps if replay_fps else float(index)
        if replay_fps:
            wait = _replay_frame(model, index, frame)
            keyframe = model.keyframe
            if wait is not None:
                held.append(wait)
        else:
            fresh, took = _timed_keyframe(processor, frame, now)
            if fresh is not None:
                keyframe, seconds, masks = fresh, seconds + took, masks + 1
        if keyframe is None:
            continue
        own += keyframe.captured_at == now
        soft = to_mask(processor.mask_for(keyframe, frame, now))
        if truth.shape != soft.shape:
            raise SourceError(f"'{sample.mask}' is not the size of its frame.")
        row = {
            "id": sample.stem,
            "mask_from": keyframe.captured_at,
            **_score(soft, truth, previous),
        }
        previous = (soft, truth) if kind == "video" else None
        if kind == "video":
            flicker.add(frame, soft)
        rows.append(row)
    if replay_fps:
        seconds, masks = model.seconds, model.masks
    ious = [row["iou"] for row in rows]
    summary: dict[str, Any] = {
        "model": processor.segmenter.name,
        "data": str(folder) + (f" ({subset})" if subset else ""),
        "kind": kind,
        "frames": len(rows),
        "iou_mean": statistics.fmean(ious),
        "iou_median": statistics.median(ious),
        "boundary_f": statistics.fmean(row["boundary_f"] for row in rows),
        "mae": statistics.fmean(row["mae"] for row in rows),
        "ms_per_mask": 1000.0 * seconds / max(1, masks),
        "masks": masks,
    }
    if kind == "video":
        steps = [row["dtssd"] for row in rows if "dtssd" in row]
        summary["dtssd"] = statistics.fmean(steps) if steps else 0.0
        summary["flicker"] = flicker.mean
        summary["options"] = dataclasses.asdict(processor.options)
        if replay_fps:
            summary["replay"] = {
                "fps": replay_fps,
                "latency_ms": latency_ms,
                "sync": sync,
                "frames_own_mask": own,
                "frames_held": len(held),
                "held_ms_max": round(1000.0 * max(held, default=0.0), 3),
            }
    return {"summary": summary, "frames": rows}


def evaluate_clip(processor: FrameProcessor, path: Path) -> dict[str, Any]:
    """The flicker figure (see :class:`FlickerMeter`) of ``processor``'s masks on every frame of a
    video file, which needs no true masks; returns the summary and per-frame values."""
    flicker = FlickerMeter()
    rows: list[dict[str, Any]] = []
    seconds = 0.0
    with VideoFileSource(path, realtime=False) as source:
        index = 0
        while (frame := source.read()) is not None:
            started = time.perf_counter()
            mask = processor.mask(frame, index / source.fps)
            seconds += time.perf_counter() - started
            rows.append({"index": index, "flicker": flicker.add(frame, mask)})
            index += 1
    if not rows:
        raise SourceError(f"Video '{path}' has no frames.")
    summary = {
        "model": processor.segmenter.name,
        "data": str(path),
        "kind": "clip",
        "frames": len(rows),
        "flicker": flicker.mean,
        "ms_per_mask": 1000.0 * seconds / len(rows),
        "options": dataclasses.asdict(processor.options),
    }
    return {"summary": summary, "frames": rows}


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the lines ``vbg eval`` prints."""
    if summary["kind"] == "clip":
        return "\n".join([
            f"{summary['model']} on {summary['data']}: {summary['frames']} video frames, no truth",
            f"  flicker     {summary['flicker']:.3f}",
            f"  {summary['ms_per_mask']:.1f} ms per mask (preprocessing, model, filters)",
        ])  # fmt: skip
    lines = [
        f"{summary['model']} on {summary['data']}: {summary['frames']} "
        + ("video frames" if summary["kind"] == "video" else "photos"),
        f"  IoU@0.5     mean {summary['iou_mean']:.4f}  median {summary['iou_median']:.4f}",
        f"  boundary F  {summary['boundary_f']:.4f}",
        f"  MAE         {summary['mae']:.4f}",
    ]
    if "dtssd" in summary:
        lines.append(f"  dtSSD       {summary['dtssd']:.3f}")
        lines.append(f"  flicker     {summary['flicker']:.3f}")
    if "replay" in summary:
        replay = summary["replay"]
        lines.append(
            f"  replayed at {replay['fps']:g} fps, model latency {replay['latency_ms']:g} ms, "
            f"sync {replay['sync']}: {replay['frames_own_mask']} of {summary['frames']} frames "
            f"with their own mask (held up to {replay['held_ms_max']:.1f} ms)"
        )
    lines.append(f"  {summary['ms_per_mask']:.1f} ms per mask (preprocessing, model, smoothing)")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")
