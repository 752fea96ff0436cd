"""The ``vbg`` command: ``run`` (the default), ``process``, ``models``, ``eval``, ``bench`` and
``doctor``.

The only place where a config file and flags become a :class:`RunConfig`, and where a
:class:`VbgError` becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from vbg import log as messages
from vbg.config import MODES, RunConfig, config_from_mapping, read_config_file
from vbg.errors import ConfigError, ModelError, VbgError
from vbg.segmentation.options import DEVICES, FETCH_SOURCES, PRECISIONS

log = logging.getLogger("vbg")
SUBCOMMANDS = ("run", "process", "models", "eval", "bench", "doctor")
_VERBOSITY_FLAGS = ("-v", "--verbose", "-q", "--quiet")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        if not messages.is_set_up():  # parsed without main(), as a program embedding vbg may
            messages.setup()
        log.error("%s (see '%s --help')", message, self.prog)
        raise SystemExit(2)


def _add_verbosity_flags(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """-v / -q, before or after the command name (the command's own leave the top's default)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=messages.VERBOSE,
        default=messages.NORMAL if top else argparse.SUPPRESS, help="say more (details)",
    )  # fmt: skip
    group.add_argument(
        "-q", "--quiet", dest="verbosity", action="store_const", const=messages.QUIET,
        default=messages.NORMAL if top else argparse.SUPPRESS, help="say only what went wrong",
    )  # fmt: skip


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="segmentation model (see 'vbg models'); fcn_resnet50")
    parser.add_argument("--weights", help="local state dict file for the model")
    parser.add_argument("--device", choices=DEVICES, help="where the model runs; auto")
    parser.add_argument(
        "--precision", choices=PRECISIONS, help="auto (float32), float32 or float16; auto"
    )
    parser.add_argument(
        "--inference-size", type=int, help="short side of the model input in pixels; per model"
    )
    parser.add_argument(
        "--crop", choices=MODES,
        help="the model looks at the person(s), not the whole frame; auto (where it pays)",
    )  # fmt: skip


def _add_mask_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mask-smoothing", type=float, help="temporal smoothing 0-<1; 0.8")
    parser.add_argument("--hysteresis", type=float, help="hold near-threshold values; 0.05")
    parser.add_argument(
        "--propagate", action=argparse.BooleanOptionalAction,
        help="move the mask along the optical flow between model results; on",
    )  # fmt: skip
    parser.add_argument(
        "--refine", action=argparse.BooleanOptionalAction,
        help="guided upsampling so edges follow the frame; on",
    )  # fmt: skip
    parser.add_argument(
        "--edge-contrast", type=float,
        help="with --refine, make the room's side of the edge this many times steeper (1-10); 3",
    )  # fmt: skip
    parser.add_argument("--feather", type=float, help="soften the edge by this many pixels; 0")


def _add_sync_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sync", choices=MODES,
        help="each frame waits for its own mask: auto (while the model keeps up), on, off; auto",
    )  # fmt: skip


def _add_frame_path_flags(parser: argparse.ArgumentParser) -> None:
    """The options of the one frame path (model, mask filters, compositing) and ``--config``:
    the same for ``run``, ``process`` and ``eval``, checked by the same code (vbg.config)."""
    parser.add_argument("--config", type=Path, help="TOML config file (see configs/default.toml)")
    parser.add_argument(
        "--background",
        help="image, folder of images, video, blur, blur:STRENGTH, color:#RRGGBB or none; blur",
    )
    _add_model_flags(parser)
    _add_mask_flags(parser)
    parser.add_argument(
        "--blur-weighted", action=argparse.BooleanOptionalAction,
        help="blur backgrounds without the person's colours (no halo); on",
    )  # fmt: skip
    parser.add_argument("--light-wrap", type=float, help="background light on the edge, 0-1; 0")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, help="flip left-right")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vbg", description="Live webcam virtual background.")
    _add_verbosity_flags(parser, top=True)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = commands.add_parser("run", help="live: camera -> virtual camera, preview, recording")
    _add_verbosity_flags(run)
    run.add_argument("--source", help="camera index (0) or a video or image file")
    run.add_argument("--loop", action=argparse.BooleanOptionalAction, help="repeat a file source")
    _add_frame_path_flags(run)
    run.add_argument(
        "--skip-still", action=argparse.BooleanOptionalAction,
        help="reuse the mask while the picture does not change (less CPU); on",
    )  # fmt: skip
    _add_sync_flag(run)
    run.add_argument("--width", type=int, help="frame width to ask the camera for / output")
    run.add_argument("--height", type=int, help="frame height to ask the camera for / output")
    run.add_argument("--fps", type=float, help="frame rate to ask the camera for / output")
    run.add_argument(
        "--virtual-cam", action=argparse.BooleanOptionalAction, help="send to the virtual camera"
    )
    run.add_argument("--preview", action=argparse.BooleanOptionalAction, help="preview window")
    run.add_argument(
        "--record", help="also record the output to this file (.mkv plays even after a crash; .mp4)"
    )
    run.add_argument("--record-dir", help="folder for recordings and snapshots made with keys")
    run.add_argument("--max-frames", type=int, help="stop after this many output frames")
    run.add_argument("--stats", help="write run statistics as JSON to this file at exit")

    process = commands.add_parser("process", help="offline: one photo or video file")
    _add_verbosity_flags(process)
    process.add_argument("input", type=Path, help="photo or video file")
    process.add_argument("-o", "--output", type=Path, required=True, help="output file")
    process.add_argument("--save-mask", type=Path, help="also write the person mask here")
    _add_frame_path_flags(process)

    evaluate = commands.add_parser("eval", help="score the masks on photos or a video with truth")
    _add_verbosity_flags(evaluate)
    evaluate.add_argument(
        "--data", type=Path, required=True,
        help="folder: images|frames, masks; or a video file (its flicker only)",
    )  # fmt: skip
    evaluate.add_argument("--subset", help="only rows of DATA/stats.csv where this column is 1")
    evaluate.add_argument("--json", type=Path, help="also write the scores as JSON here")
    evaluate.add_argument(
        "--replay-fps", type=float, default=0.0,
        help="replay a video as a live camera at this rate and score what a viewer sees",
    )  # fmt: skip
    evaluate.add_argument(
        "--latency-ms", type=float, default=0.0,
        help="with --replay-fps: the model's time per mask (0: as measured)",
    )  # fmt: skip
    _add_sync_flag(evaluate)
    _add_frame_path_flags(evaluate)

    bench = commands.add_parser("bench", help="time the models, the compositor and the pipeline")
    _add_verbosity_flags(bench)
    bench.add_argument(
        "--source", default="0",
        help="camera index or video file, played as a 30 fps 1280x720 camera (a video loops); 0",
    )  # fmt: skip
    bench.add_argument(
        "--still", type=Path, metavar="PICTURE",
        help="also run the pipeline part with this picture as the camera (a still scene)",
    )  # fmt: skip
    bench.add_argument(
        "--background-image", type=Path, metavar="PATH",
        help="picture the compositor part times; the source's first frame",
    )  # fmt: skip
    bench.add_argument(
        "--background-video", type=Path, metavar="PATH",
        help="also time the compositor with this video as the background",
    )  # fmt: skip
    bench.add_argument("--models", nargs="+", help="models to time; all")
    bench.add_argument("--devices", nargs="+", choices=DEVICES, default=["cpu"], help="cpu")
    bench.add_argument("--seconds", type=float, default=10.0, help="pipeline run per model; 10")
    bench.add_argument("--repeat", type=int, default=20, help="timed runs per model; 20")
    bench.add_argument("--pipeline-models", nargs="*", help="models for the pipeline part; all")
    bench.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto")
    bench.add_argument(
        "--no-skip-still",
        dest="skip_still",
        action="store_false",
        help="segment every frame in the pipeline part, even one that barely changed",
    )
    _add_sync_flag(bench)
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")

    doctor = commands.add_parser("doctor", help="check what 'vbg run' needs, each with its fix")
    _add_verbosity_flags(doctor)
    models = commands.add_parser("models", help="list the models; 'fetch NAME' caches weights")
    _add_verbosity_flags(models)
    models.add_argument("action", nargs="?", default="list", help="list (default) or fetch")
    models.add_argument("names", nargs="*", help="models to fetch")
    models.add_argument(
        "--from", dest="sources", action="append", choices=FETCH_SOURCES,
        help="where to fetch MediaPipe files from (repeatable); all, in order, by default",
    )  # fmt: skip
    return parser


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {field for field in RunConfig.__dataclass_fields__}
    return {key: value for key, value in vars(args).items() if key in keys and value is not None}


def build_config(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the ``--config`` file, then flags; validated once."""
    values: dict[str, Any] = {}
    if args.config is not None:
        values = read_config_file(args.config)
        config_from_mapping(values, origin=str(args.config))  # report file errors against the file
    values.update(_flag_overrides(args))
    return config_from_mapping(values, origin="command line")


def _models(args: argparse.Namespace) -> int:
    from vbg.segmentation.models import MODELS, fetch_model, is_cached

    if args.action == "fetch":
        if not args.names:
            raise ModelError(
                "Name the models to fetch, for example: vbg models fetch mediapipe_selfie"
            )
        for name in args.names:
            print(fetch_model(name, sources=args.sources or FETCH_SOURCES))
        return 0
    if args.action != "list":
        raise ModelError(f"Unknown 'vbg models' action '{args.action}'; use list or fetch.")
    print(f"{'model':<30} {'input':>18} {'CPU ms/mask':>12} {'masks/s':>8}  weights")
    for info in MODELS.values():
        if is_cached(info):
            cached = "cached"
        elif info.family == "mediapipe":
            cached = f"not cached: vbg models fetch {info.name}"
        else:
            cached = "not cached (downloaded on first use)"
        print(
            f"{info.name:<30} {info.input_label:>18} {info.cpu_ms:>12.0f} "
            f"{1000 / info.cpu_ms:>8.1f}  {cached}"
        )
    print("CPU figures: 2-core x86 CPU, 1280x720 frames, measured with 'vbg bench'.")
    return 0


def _process(args: argparse.Namespace) -> int:
    from vbg.commands.process import process_file

    config = build_config(args)
    frames = process_file(args.input, args.output, config, save_mask=args.save_mask)
    log.info("wrote %s (%d frame%s)", args.output, frames, "s" if frames != 1 else "")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vbg.commands.evaluate import (
        check_replay,
        evaluate,
        evaluate_clip,
        format_summary,
        write_json,
    )
    from vbg.commands.frame_path import make_processor

    config = build_config(args)  # the same keys, checks and defaults as 'vbg run'
    # The data and the replay options are checked before the model loads.
    kind, _ = check_replay(args.data, args.subset, args.replay_fps, args.latency_ms)
    processor = make_processor(config, live=False)
    if kind == "clip":  # a video file without true masks: its flicker
        result = evaluate_clip(processor, args.data)
    else:
        result = evaluate(
            processor,
            args.data,
            subset=args.subset,
            replay_fps=args.replay_fps,
            latency_ms=args.latency_ms,
            sync=config.sync,
        )
    print(format_summary(result["summary"]))
    if args.json:
        write_json(result, args.json)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from vbg.commands.bench import format_bench, run_bench, write_json
    from vbg.segmentation.models import MODELS, model_info

    models = args.models or list(MODELS)
    for name in [*models, *(args.pipeline_models or [])]:
        model_info(name)  # an unknown name fails here, before anything runs
    if args.seconds <= 0 or args.repeat <= 0:
        raise ConfigError("--seconds and --repeat must be more than 0.")
    result = run_bench(
        models=models,
        source=args.source,
        still=args.still,
        background_image=args.background_image,
        background_video=args.background_video,
        devices=args.devices,
        seconds=args.seconds,
        repeat=args.repeat,
        pipeline_models=args.pipeline_models,
        skip_still=args.skip_still,
        precision=args.precision,
        sync=args.sync or "auto",
    )
    print(format_bench(result))
    if args.json:
        write_json(result, args.json)
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from vbg.commands.run import run

    config = build_config(args)
    # SIGTERM finalises recordings like Ctrl-C does. SIGINT is set too: a program started from
    # a script in the background inherits SIGINT ignored, and would then not stop on it.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        stats = run(config)
    except KeyboardInterrupt:
        log.info("stopped")
        return 0
    log.info("done: %d frames out, %d masks", stats.get("frames_out"), stats.get("masks"))
    return 0


def _doctor() -> int:
    from vbg.commands.doctor import run_checks

    checks = run_checks()
    for check in checks:
        print(check.line())
    missing = [check.name for check in checks if check.needed and not check.ok]
    if missing:
        print(f"vbg run needs: {', '.join(missing)} (see the fixes above)")
        return 1
    print("everything vbg run needs is here")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vbg`` command; returns the exit code."""
    messages.setup()
    arguments = list(sys.argv[1:] if argv is None else argv)
    leading = 0
    while leading < len(arguments) and arguments[leading] in _VERBOSITY_FLAGS:
        leading += 1
    rest = arguments[leading:]
    if not rest or rest[0] not in (*SUBCOMMANDS, "-h", "--help"):
        arguments.insert(leading, "run")  # plain 'vbg' and 'vbg --flags' mean 'vbg run'
    args = _build_parser().parse_args(arguments)
    messages.setup(args.verbosity)
    import cv2  # here, not at the top: --help and flag errors answer without it

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # vbg says what failed
    try:
        if args.command == "models":
            return _models(args)
        if args.command == "process":
            return _process(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "doctor":
            return _doctor()
        return _run(args)
    except VbgError as exc:
        log.error("%s", exc)
        log.debug("where it happened:", exc_info=exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
