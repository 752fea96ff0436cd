"""The ``vbg`` command: ``run`` (the default), ``process``, ``models``, ``eval``, ``bench`` and
``doctor``.

The only place where a config file and flags become a :class:`RunConfig`, and where a
:class:`VbgError` becomes one line on stderr and an exit code (the rule: vbg.errors).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from vbg import log as messages
from vbg.config import (
    MODES,
    RunConfig,
    config_from_mapping,
    did_you_mean,
    flag_for,
    read_config_file,
)
from vbg.errors import ConfigError, VbgError
from vbg.segmentation.options import DEVICES, FETCH_SOURCES, MODEL_NAMES, PRECISIONS

log = logging.getLogger("vbg")
_VERBOSITY_FLAGS = ("-v", "--verbose", "-q", "--quiet")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse reads these as values, not flags


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line, without the usage block, and says what was
    meant: the flag, choice or command closest to the one typed, or the command a flag is of."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, _Parser] = {}  # all of vbg's commands (set by _build_parser)

    def error(self, message: str) -> NoReturn:
        if not messages.is_set_up():  # parsed without main(), as a program embedding vbg may
            messages.setup()
        log.error("%s (see '%s --help')", message, self.prog)
        raise SystemExit(2)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        """argparse's, with mistyped flags found first: ``vbg process --loop`` says that --loop
        is a flag of ``vbg run`` rather than that the input is missing."""
        arguments = list(sys.argv[1:] if args is None else args)
        # The top's own flags (-h, -v, -q) take no value: the first other word is the command.
        first = next((i for i, word in enumerate(arguments) if not word.startswith("-")), None)
        if first is None:
            own, rest = self, arguments
        elif arguments[first] in self.commands:
            own, rest = self.commands[arguments[first]], arguments[first + 1 :]
        else:  # an unknown command: argparse says so first
            own, rest = self, []
        unknown = own.unknown_flags(rest)
        if unknown:
            own.error(own.explain_unknown(unknown))
        parsed, extras = self.parse_known_args(arguments, namespace)
        if extras:
            own.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def flags(self) -> list[str]:
        """Every flag of this parser (-h, --help, --no-mirror, ...)."""
        return list(self._option_string_actions)  # argparse keeps no public list of them

    def unknown_flags(self, arguments: Sequence[str]) -> list[str]:
        """The flags in ``arguments`` that this parser does not know, as typed (without a
        ``=VALUE``); a long flag may be cut short, as argparse allows (``--mask-smooth``)."""
        known = self.flags()
        unknown = []
        for word in arguments:
            if word == "--":  # the rest are not flags
                break
            if not word.startswith("-") or word == "-" or _NEGATIVE_NUMBER.match(word):
                continue
            if word.startswith("--"):
                typed = word.split("=", 1)[0]
                if not any(flag.startswith(typed) for flag in known if flag.startswith("--")):
                    unknown.append(typed)
            elif word[:2] not in known:
                unknown.append(word)
        return list(dict.fromkeys(unknown))  # each once

    def explain_unknown(self, unknown: list[str]) -> str:
        """``unknown flag --x.`` with, for each, the flag meant or the command it is a flag of."""
        hints = []
        own = {flag.lstrip("-"): flag for flag in self.flags() if flag.startswith("--")}
        for typed in unknown:
            elsewhere = [
                f"'{other.prog}'"
                for other in self.commands.values()
                if other is not self and typed in other.flags()
            ]
            if elsewhere:
                hints.append(f" {typed} is a flag of {_either(elsewhere)}, not of '{self.prog}'.")
            else:
                hints.append(did_you_mean(typed.lstrip("-"), own))
        plural = "s" if len(unknown) > 1 else ""
        return _sentence(f"unknown flag{plural} {', '.join(unknown)}", "".join(hints))

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's check of a choice (a private method: Python 3.11 has no "did you mean").
        if action.choices is None or value in action.choices:
            return
        names = [str(choice) for choice in action.choices]
        listed = _sentence(
            f"'{value}' (choose from {', '.join(names)})", did_you_mean(str(value), names)
        )
        if action.dest == "command":
            self.error(f"unknown command {listed}")
        raise argparse.ArgumentError(action, f"invalid choice: {listed}")


def _sentence(message: str, hint: str) -> str:
    """``message``, and the ``hint`` (a sentence with a space before it) if there is one."""
    return f"{message}.{hint}" if hint else message


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _add_key(
    parser: argparse.ArgumentParser, key: str, text: str, default: str = "", **kwargs: Any
) -> None:
    """The flag of config key ``key`` (``--mask-smoothing``): its type, on/off form and
    ``(default: ...)`` from RunConfig, ``default`` in words where the value alone says little."""
    value = getattr(RunConfig(), key)
    if isinstance(value, bool):
        kwargs.setdefault("action", argparse.BooleanOptionalAction)
        default = default or ("on" if value else "off")
    elif isinstance(value, int | float):
        kwargs.setdefault("type", type(value))
        default = default or f"{value:g}"
    elif isinstance(value, str):
        default = default or value
    text = f"{text} (default: {default})" if default else text
    parser.add_argument(flag_for(key), help=text, **kwargs)


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
    _add_key(
        parser, "model", "segmentation model: auto, or a model of 'vbg models'", metavar="NAME",
        default="auto, which is fcn_resnet50 on a GPU and mediapipe_selfie_landscape on a CPU",
    )  # fmt: skip
    _add_key(
        parser, "weights", "local weights file: a state dict (.pt, .pth) for a torchvision "
        "model, the .tflite file for a MediaPipe one", metavar="PATH",
        default="downloaded or fetched on first use, then cached",
    )  # fmt: skip
    _add_key(
        parser, "device", "where the model runs: auto takes an Apple GPU, else CUDA, else the CPU",
        choices=DEVICES,
    )  # fmt: skip
    _add_key(
        parser, "precision", "auto is float32, float16 may pay on some GPUs", choices=PRECISIONS
    )
    _add_key(
        parser, "inference_size", "short side of the model input, 32-2048", metavar="PIXELS",
        default="0, the model's own",
    )  # fmt: skip
    _add_key(
        parser, "crop", "the model looks at the person(s), not the whole frame: auto where it pays",
        choices=MODES,
    )  # fmt: skip


def _add_mask_flags(parser: argparse.ArgumentParser) -> None:
    _add_key(parser, "mask_smoothing", "temporal smoothing of the mask, at least 0 and below 1")
    _add_key(
        parser, "hysteresis",
        "hold mask values near the threshold until they move this much, 0 to below 0.5",
    )  # fmt: skip
    _add_key(parser, "propagate", "move the mask along the optical flow between model results")
    _add_key(parser, "refine", "guided upsampling so edges follow the frame")
    _add_key(
        parser, "edge_contrast",
        "with --refine, make the room's side of the edge this many times steeper, 1-10",
    )  # fmt: skip
    _add_key(parser, "feather", "soften the edge by this many pixels, 0-50", metavar="PIXELS")


def _add_sync_flag(parser: argparse.ArgumentParser) -> None:
    _add_key(
        parser, "sync", "each frame waits for its own mask: auto while the model keeps up",
        choices=MODES,
    )  # fmt: skip


def _add_frame_path_flags(parser: argparse.ArgumentParser) -> None:
    """The options of the one frame path (model, mask filters, compositing) and ``--config``:
    the same for ``run``, ``process`` and ``eval``, checked by the same code (vbg.config)."""
    parser.add_argument(
        "--config", type=Path, metavar="FILE",
        help="TOML file whose keys set these options, flags win (see configs/default.toml)",
    )  # fmt: skip
    _add_key(
        parser, "background", "image, folder of images, video, blur, blur:STRENGTH (1-200), "
        "color:#RRGGBB or none", metavar="SPEC",
    )  # fmt: skip
    _add_model_flags(parser)
    _add_mask_flags(parser)
    _add_key(parser, "blur_weighted", "blur backgrounds without the person's colours (no halo)")
    _add_key(parser, "light_wrap", "background light on the edge, 0-1")
    _add_key(parser, "mirror", "flip the camera's picture left-right")


def _build_parser() -> _Parser:
    parser = _Parser(prog="vbg", description="Live webcam virtual background.")
    _add_verbosity_flags(parser, top=True)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = commands.add_parser("run", help="live: camera -> virtual camera, preview, recording")
    _add_verbosity_flags(run)
    _add_key(run, "source", "camera index or a video or image file")
    _add_key(run, "loop", "repeat a file source")
    _add_frame_path_flags(run)
    _add_key(run, "skip_still", "reuse the mask while the picture does not change, less CPU")
    _add_sync_flag(run)
    own = "0, the source's own, a camera is asked for"
    _add_key(
        run, "width", "even frame width to ask the camera for and to output, with --height",
        default=f"{own} 1280",
    )  # fmt: skip
    _add_key(
        run, "height", "even frame height to ask the camera for and to output, with --width",
        default=f"{own} 720",
    )  # fmt: skip
    _add_key(run, "fps", "frame rate to ask the camera for and to output", default=f"{own} 30")
    _add_key(run, "virtual_cam", "send to the virtual camera")
    _add_key(run, "preview", "show a preview window")
    _add_key(
        run, "record", "also record the output to this file, .mkv (plays even after a crash) "
        "or .mp4", metavar="FILE",
    )  # fmt: skip
    _add_key(
        run, "record_dir", "folder for recordings and snapshots made with the preview's keys",
        metavar="FOLDER", default="the current folder",
    )  # fmt: skip
    _add_key(run, "max_frames", "stop after this many output frames", default="0, run until quit")
    _add_key(run, "stats", "write run statistics as JSON to this file at exit", metavar="FILE")
    _add_key(run, "overwrite", "replace a --record or --stats file that exists")

    process = commands.add_parser("process", help="offline: one photo or video file")
    _add_verbosity_flags(process)
    process.add_argument("input", type=Path, help="photo or video file")
    process.add_argument("-o", "--output", type=Path, required=True, help="output file")
    process.add_argument("--save-mask", type=Path, help="also write the person mask here")
    _add_key(process, "overwrite", "replace an output or mask file that exists")
    _add_frame_path_flags(process)

    evaluate = commands.add_parser("eval", help="score the masks on photos or a video with truth")
    _add_verbosity_flags(evaluate)
    evaluate.add_argument(
        "--data", type=Path, required=True,
        help="a folder with images/ or frames/ and masks/, or a video file (its flicker only)",
    )  # fmt: skip
    evaluate.add_argument("--subset", help="only rows of DATA/stats.csv where this column is 1")
    evaluate.add_argument("--json", type=Path, help="also write the scores as JSON here")
    evaluate.add_argument(
        "--replay-fps", type=float, default=0.0,
        help="replay a video as a live camera at this rate and score what a viewer sees "
        "(default: 0, no replay)",
    )  # fmt: skip
    evaluate.add_argument(
        "--latency-ms", type=float, default=0.0,
        help="with --replay-fps: the model's time per mask (default: 0, as measured)",
    )  # fmt: skip
    _add_sync_flag(evaluate)
    _add_frame_path_flags(evaluate)

    bench = commands.add_parser("bench", help="time the models, the compositor and the pipeline")
    _add_verbosity_flags(bench)
    bench.add_argument(
        "--source", default="0",
        help="camera index or video file, played as a 30 fps 1280x720 camera, a video looping "
        "(default: 0)",
    )  # fmt: skip
    bench.add_argument(
        "--still", type=Path, metavar="PICTURE",
        help="also run the pipeline part with this picture as the camera (a still scene)",
    )  # fmt: skip
    bench.add_argument(
        "--background-image", type=Path, metavar="PATH",
        help="picture the compositor part times (default: the source's first frame)",
    )  # fmt: skip
    bench.add_argument(
        "--background-video", type=Path, metavar="PATH",
        help="also time the compositor with this video as the background",
    )  # fmt: skip
    bench.add_argument(
        "--models", nargs="+", metavar="NAME",
        help="models to time, of 'vbg models' (default: all)",
    )  # fmt: skip
    bench.add_argument(
        "--devices", nargs="+", choices=DEVICES, default=["cpu"], metavar="DEVICE",
        help=f"where to time the models, one or more of {', '.join(DEVICES)} (default: cpu)",
    )  # fmt: skip
    bench.add_argument(
        "--seconds", type=float, default=10.0,
        help="how long the pipeline part runs each model (default: 10)",
    )  # fmt: skip
    bench.add_argument("--repeat", type=int, default=20, help="timed runs per model (default: 20)")
    bench.add_argument(
        "--pipeline-models", nargs="*", metavar="NAME",
        help="models for the pipeline part, none if no name follows (default: those of --models)",
    )  # fmt: skip
    bench.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto is float32, float16 may pay on some GPUs (default: auto)",
    )  # fmt: skip
    bench.add_argument(
        "--no-skip-still",
        dest="skip_still",
        action="store_false",
        help="segment every frame in the pipeline part, even one that barely changed",
    )
    bench.add_argument(
        "--pipeline-backgrounds", nargs="+", default=["blur"], metavar="SPEC",
        help="backgrounds the pipeline part runs each model with, as --background takes them "
        "(default: blur)",
    )  # fmt: skip
    bench.add_argument(
        "--pipeline-record", action="store_true",
        help="also run each pipeline model with an H.264 recording, as vbg run --record",
    )  # fmt: skip
    bench.add_argument(
        "--startup-runs", type=int, default=3, metavar="N",
        help="runs of vbg run's start-up (launch to the first frame out) timed per pipeline "
        "model, 0 for none (default: 3)",
    )  # fmt: skip
    bench.add_argument(
        "--size", nargs="+", default=["1280x720"], metavar="WxH",
        help="the camera sizes the pipeline part plays, each in turn (default: 1280x720)",
    )  # fmt: skip
    _add_sync_flag(bench)
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")

    doctor = commands.add_parser(
        "doctor", help="check what 'vbg run' needs, each with its fix",
        description="Check what 'vbg run' with the same --config, --model and --source would "
        "use (by default what plain 'vbg' uses): the model and its weights, the camera, the "
        "virtual camera and the display, each with its fix.",
    )  # fmt: skip
    _add_verbosity_flags(doctor)
    doctor.add_argument("--config", type=Path, help="TOML config file of the run to check")
    doctor.add_argument("--model", help="model of the run to check (default: the config's)")
    doctor.add_argument("--source", help="camera index or video file of the run to check")
    models = commands.add_parser("models", help="list the models; 'fetch NAME' caches weights")
    _add_verbosity_flags(models)
    models.add_argument(
        "action", nargs="?", default="list", choices=("list", "fetch"),
        help="list the models, or fetch the weights of NAMES (default: list)",
    )  # fmt: skip
    models.add_argument("names", nargs="*", help="models to fetch")
    models.add_argument(
        "--from", dest="sources", action="append", choices=FETCH_SOURCES,
        help="where to fetch MediaPipe files from, repeatable (default: all, in this order)",
    )  # fmt: skip
    for command in (parser, *commands.choices.values()):  # each says where a flag belongs
        command.commands = commands.choices
    return parser


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {field for field in RunConfig.__dataclass_fields__}
    return {key: value for key, value in vars(args).items() if key in keys and value is not None}


def build_config(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the ``--config`` file, then flags; validated once. An error names the
    flag typed, or the file and the key when the value came from the file."""
    values: dict[str, Any] = {}
    if args.config is not None:
        values = read_config_file(args.config)
    flags = _flag_overrides(args)
    values.update(flags)
    return config_from_mapping(values, origin=str(args.config or "config"), flags=set(flags))


def _models(args: argparse.Namespace) -> int:
    from vbg.commands.models import models_command

    return models_command(args.action, args.names, args.sources or FETCH_SOURCES)


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


def _camera_size(text: str) -> tuple[int, int]:
    """``WxH`` (``--size``) as (width, height), each 16 to 3840 and even."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size '{text}' is not WxH, e.g. 1920x1080.") from None
    if not (16 <= width <= 3840 and 16 <= height <= 3840) or width % 2 or height % 2:
        raise ConfigError(f"--size '{text}': width and height must be even, 16 to 3840.")
    return width, height


def _bench(args: argparse.Namespace) -> int:
    from vbg.commands.bench import format_bench, run_bench, write_json

    for flag, names in (("--models", args.models), ("--pipeline-models", args.pipeline_models)):
        for name in names or []:  # an unknown name fails here, before anything runs
            if name not in MODEL_NAMES:
                raise ConfigError(
                    f"Unknown model '{name}' in {flag}: choose from {', '.join(MODEL_NAMES)} "
                    f"(see 'vbg models').{did_you_mean(name, MODEL_NAMES)}"
                )
    if args.seconds <= 0 or args.repeat <= 0 or args.startup_runs < 0:
        raise ConfigError("--seconds and --repeat must be more than 0, --startup-runs 0 or more.")
    sizes = [_camera_size(text) for text in args.size]
    result = run_bench(
        models=args.models or list(MODEL_NAMES),
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
        pipeline_backgrounds=args.pipeline_backgrounds,
        pipeline_record=args.pipeline_record,
        sizes=sizes,
        startup_runs=args.startup_runs,
    )
    print(format_bench(result))
    if args.json:
        write_json(result, args.json)
    return 0


# The signals that end a command as Ctrl-C does (SIGHUP: the terminal was closed), with what a
# message calls them. Each finalises the outputs; the exit code is 128 + the signal's number.
_STOP_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP, the terminal closed"}


class _Interrupts:
    """The signals that stop a command. The first raises KeyboardInterrupt in the main thread:
    what the command does stops, and its ExitStack finalises the outputs (a recording, ``vbg
    process``'s video) and writes the stats. Any later one is only noted: a second Ctrl-C must
    not cut the finalising short (it used to leave vbg hung). SIGINT is set too, not left to
    Python: a program started in the background by a script inherits SIGINT ignored.

    Python runs signal handlers in the main thread only, between two bytecodes, so the state
    here is the main thread's alone (no lock)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal's number
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle the stop signals (this platform's; from the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works there only; KeyboardInterrupt stays Python's
        for name in _STOP_SIGNALS:
            number = getattr(signal, name, None)  # Windows has no SIGHUP
            if number is not None:
                self._previous[number] = signal.signal(number, self._handle)

    def ignore(self) -> None:
        """Ignore the stop signals from now on (the program is ending; Python, ending, would
        put back their default, which kills the process, for those it handles itself)."""
        for number in self._previous:
            signal.signal(number, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the handlers there were before :meth:`install`."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        """The first signal as the user knows it (Ctrl-C)."""
        number = self.signum or signal.SIGINT
        return _STOP_SIGNALS.get(signal.Signals(number).name, signal.Signals(number).name)

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number, as shells report it (130 for Ctrl-C)."""
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            raise KeyboardInterrupt
        log.warning(
            "%s: already stopping; the outputs are being finalised (a few seconds at most).",
            _STOP_SIGNALS.get(signal.Signals(signum).name, signal.Signals(signum).name),
        )


def _run(args: argparse.Namespace) -> int:
    from vbg.commands.run import run

    config = build_config(args)
    # A stop signal ends it as a KeyboardInterrupt, outputs finalised.
    stats = run(config, config_file=args.config)
    log.info("done: %d frames out, %d masks", stats.get("frames_out"), stats.get("masks"))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from vbg.commands.doctor import run_checks

    checks = run_checks(build_config(args))
    for check in checks:
        print(check.line())
    missing = [check.name for check in checks if check.needed and not check.ok]
    if missing:
        print(f"vbg run needs: {', '.join(missing)} (see the fixes above)")
        return 1
    print("everything vbg run needs is here")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vbg`` command; returns the exit code (the rule: vbg.errors).

    A stop signal (Ctrl-C, SIGTERM, SIGHUP) ends the command with its outputs finalised and one
    line, ``stopped (Ctrl-C)``, followed by what the command had done by then when it says so
    (the message of its KeyboardInterrupt); the exit code is 128 + the signal's number.

    Called as the program (``argv`` None: ``vbg``, ``python -m vbg``), the process ends at once
    once everything is finalised, should a thread of vbg's still be running (see
    :func:`_end_now_if_threads_run`)."""
    interrupts = _Interrupts()
    interrupts.install()
    try:
        code = _command(argv)
    except KeyboardInterrupt as exc:
        done = f": {exc}" if str(exc) else ""
        log.info("stopped (%s)%s", interrupts.name, done)
        code = interrupts.exit_code
    finally:
        if argv is None:  # the program ends: a signal now would only cut Python's ending short
            interrupts.ignore()
        else:
            interrupts.restore()
    if argv is None:
        _end_now_if_threads_run(code)
    return code


def _end_now_if_threads_run(code: int) -> None:
    """End the process with ``code`` now if a thread of vbg's still runs: a slow model's last
    run, which stop() does not await. Python would wait for nothing (vbg's threads are daemons)
    but such a thread, inside a torch call while Python shuts down, aborts the process ("terminate
    called without an active exception", exit code -6). Everything is finalised by now; the
    messages are flushed first."""
    running = [t.name for t in threading.enumerate() if t.name.startswith("vbg-") and t.is_alive()]
    if not running:
        return
    log.debug("ending with %s still running", ", ".join(running))
    for flush in [handler.flush for handler in log.handlers] + [sys.stdout.flush, sys.stderr.flush]:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal (SIGHUP)
            flush()
    os._exit(code)


def _command(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command; the exit code. A stop signal comes out as a
    KeyboardInterrupt, for :func:`main`."""
    messages.setup()
    arguments = list(sys.argv[1:] if argv is None else argv)
    leading = 0
    while leading < len(arguments) and arguments[leading] in _VERBOSITY_FLAGS:
        leading += 1
    rest = arguments[leading:]
    if not rest or (rest[0].startswith("-") and rest[0] not in ("-h", "--help")):
        arguments.insert(leading, "run")  # plain 'vbg' and 'vbg --flags' mean 'vbg run'
    try:  # a word that is no command ('vbg proces') is argparse's to report
        args = _build_parser().parse_args(arguments)
    except SystemExit as exc:  # --help (0) or a usage error, already reported (2)
        return exc.code if isinstance(exc.code, int) else 2
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
            return _doctor(args)
        return _run(args)
    except VbgError as exc:  # one line, also when a path in it holds a line break
        log.error("%s", str(exc).replace("\r", "\\r").replace("\n", "\\n"))
        log.debug("where it happened:", exc_info=exc)
        return exc.exit_code
