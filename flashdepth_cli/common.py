"""What the subcommands share: usage errors, the translation of library errors into flags,
progress display, the device/precision options, and the options of a run (model and outputs),
which ``run`` and ``batch`` both take."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from flashdepth.inference.backends import BACKENDS, graph_file_backends
from flashdepth.batch.engines import engine_options
from flashdepth.config import PRECISIONS
from flashdepth.errors import (AnchorsError, ConfigError, DeviceUnavailableError, FlashDepthError, GraphFileError,
                               GraphOptionError, InferenceModeError, MissingIndexError, OptionValueError,
                               OutputExistsError,
                               ServeAddressError, UnknownModelError,
                               UnknownNameError)
from flashdepth.geometry import DEFAULT_FOV, DEFAULT_MAX_DEPTH
from flashdepth.vis.colormap import COLORMAPS, DEFAULT_COLORMAP
from flashdepth.io.sinks import DEFAULT_OUTPUTS, DEFAULT_PLY_EVERY, OUTPUTS
from flashdepth.inference.modes import DEFAULT_MODE, MODES
from flashdepth.inference.registry import list_models

DEFAULT_SAVE = ",".join(DEFAULT_OUTPUTS)


class UsageError(FlashDepthError):
    """A command-line usage error, already worded in flags."""


#: the library's parameter names -> the command line's flags, for error messages
_FLAG_OF_KIND = {"output": "--save", "colour map": "--colormap", "model": "--model", "dataset": "DATASET",
                 "backend": "--backend", "graph runtime": "--backend", "engine": "--engine", "viewer": "--view",
                 "inference mode": "--mode"}
#: option names of the library -> flags, for OptionValueError (the batch engines' options included)
_FLAG_OF_OPTION = {"ply_every": "--ply-every", "metric_from": "--metric-from", **{o.name: f"--{o.name.replace('_', '-')}" for o in engine_options()}}


def option_flag(name: str) -> str:
    """The command line's flag of the library's option ``name``."""
    return _FLAG_OF_OPTION.get(name, f"--{name.replace('_', '-')}")


def cli_message(e: BaseException) -> str:
    """The library speaks in API terms; say the same in flags."""
    if isinstance(e, DeviceUnavailableError):
        return f"--device {e.requested} was asked for but {e.reason}; use --device cpu (or --device auto)"
    if isinstance(e, MissingIndexError):
        return e.worded("--recover-with {}")
    if isinstance(e, ServeAddressError):
        return f"--serve {e.host}:{e.port}: cannot serve there ({e.reason}); choose another port (--serve 0 picks a free one)"
    if isinstance(e, GraphFileError):
        return f"{e.problem}; write one with `flashdepth export onnx --model NAME --size HxW -o FILE.onnx`"
    if isinstance(e, GraphOptionError):  # the spec's fields are the flags of the same names
        return f"--{e.option} {e.value} {e.reason}"
    if isinstance(e, OptionValueError) and e.name in _FLAG_OF_OPTION:
        value = f"{e.value:g}" if isinstance(e.value, float) else e.value  # as typed: -1, not -1.0
        return f"{option_flag(e.name)} {value}: {e.requirement}"
    if isinstance(e, AnchorsError):
        return f"--anchors {e.path}: {e.problem}"
    if isinstance(e, InferenceModeError):
        with_option = f" with {option_flag(e.option)}" if e.option else ""
        return f"--mode {e.mode}{with_option} {e.problem}; use --mode {e.instead}"
    if isinstance(e, OutputExistsError):
        return f"{', '.join(e.paths)} already exist(s); pass --overwrite to replace them"
    if isinstance(e, UnknownNameError) and not isinstance(e, UnknownModelError) and e.kind in _FLAG_OF_KIND:
        return f"{_FLAG_OF_KIND[e.kind]}: unknown {e.kind} {e.name!r}; choose from {', '.join(e.choices)}"
    return str(e)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help="compute precision (autocast below fp32; tf32 is fp32 with TF32 matmuls and "
                             "convolutions on CUDA, fp32 means IEEE fp32); default bf16 on CUDA, fp32 elsewhere. "
                             "bf16 also runs on CPU (slower than fp32 on most CPUs without AMX)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The model and output options of a run (``flashdepth run``, and ``flashdepth batch`` for each input)."""
    p.add_argument("--model", choices=list_models(), help="model variant (default: flashdepth, or what --checkpoint holds)")
    p.add_argument("--checkpoint", help="weights file (default: download the published weights of --model)")
    add_device_options(p)
    p.add_argument("--resolution", type=int, metavar="N",
                   help="process at short side N (depth is still written at the input's size)")
    p.add_argument("--save", default=DEFAULT_SAVE, metavar="LIST",
                   help=f"outputs, comma-separated, from: {', '.join(OUTPUTS)} (default {DEFAULT_SAVE})")
    p.add_argument("--colormap", default=DEFAULT_COLORMAP, choices=COLORMAPS,
                   help=f"colour map of vis and sbs (default {DEFAULT_COLORMAP})")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate given to image inputs and to recovered videos that do not say theirs (default 30)")
    p.add_argument("--recover-with", metavar="GOOD.mp4",
                   help="for an MP4/MOV whose recording was interrupted (no index): a complete recording made by the "
                        "same camera with the same settings, whose decoder configuration rebuilds the frames")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--reset-on-cut", action="store_true", help="reset the stream state at detected shot cuts")
    p.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE, metavar="NAME",
                   help="how frames go through the model: " + "; ".join(f"{m.name}: {m.description}"
                                                                        for m in MODES.values())
                   + f" (default {DEFAULT_MODE})")
    p.add_argument("--backend", choices=list(BACKENDS), metavar="NAME",
                   help="how the model runs: " + "; ".join(f"{b.name}: {b.description}" for b in BACKENDS.values())
                   + f" (default: torch). With --checkpoint FILE.onnx, an exported graph runs on "
                   f"{' or '.join(graph_file_backends())} (default {graph_file_backends()[0]})")
    metres = p.add_argument_group("metres from a relative model (docs/metric.md)").add_mutually_exclusive_group()
    metres.add_argument("--metric-from", metavar="MODEL[:EVERY]",
                        help="run the metric model MODEL (a metric row of `flashdepth models`, or a checkpoint) on "
                             "every EVERY-th frame (default 1; also the first frame after a cut) and fit the stream's "
                             "scale and shift in inverse depth to it, robustly and smoothed over time: the outputs "
                             "are then in metres, at the stream's resolution and with its temporal consistency")
    metres.add_argument("--anchors", metavar="FILE",
                        help="the same fit from sparse depths in metres: a .csv (header frame,u,v,depth) or .npz "
                             "(arrays frame, u, v, depth); frame from 0, u = pixel column, v = pixel row")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    three_d = p.add_argument_group("3D outputs (ply, rerun) and viewers")
    camera = three_d.add_mutually_exclusive_group()
    camera.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                        help="camera intrinsics in pixels of the input (pixel centres at integer coordinates)")
    camera.add_argument("--fov", type=float, metavar="DEG",
                        help=f"horizontal field of view when --intrinsics is not given (default {DEFAULT_FOV:g})")
    three_d.add_argument("--ply-every", type=int, default=DEFAULT_PLY_EVERY, metavar="N",
                         help=f"ply: a point cloud of frames 0, N, 2N, ... (default {DEFAULT_PLY_EVERY})")
    three_d.add_argument("--max-depth", type=float, default=DEFAULT_MAX_DEPTH, metavar="M",
                         help=f"3D outputs leave out points farther than M metres (default {DEFAULT_MAX_DEPTH:g})")


def parse_size(text: str) -> tuple[int, int]:
    """An argparse type for HxW sizes (e.g. 518x518)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW (e.g. 518x518)") from None
    return h, w


def parse_save(save: str) -> tuple[str, ...]:
    """--save's names (the library checks them: RunOptions; cli_message words its error in flags)."""
    return tuple(dict.fromkeys(s.strip() for s in save.split(",") if s.strip()))


def parse_unprojection(args: argparse.Namespace):
    """--intrinsics, --fov and --max-depth as the library's Unprojection (errors in flags)."""
    from flashdepth.geometry import Intrinsics, Unprojection

    intrinsics = None
    if args.intrinsics:
        try:
            intrinsics = Intrinsics.parse(args.intrinsics)
        except ConfigError:
            raise UsageError(f"--intrinsics {args.intrinsics!r}: give four numbers FX,FY,CX,CY in pixels, "
                             "FX and FY positive, e.g. --intrinsics 800,800,479.5,269.5") from None
    fov = DEFAULT_FOV if args.fov is None else args.fov
    if not 0 < fov < 180:
        raise UsageError(f"--fov {args.fov:g}: give a horizontal field of view in degrees, between 0 and 180")
    if not args.max_depth > 0:
        raise UsageError(f"--max-depth {args.max_depth:g}: give a positive distance in metres")
    return Unprojection(intrinsics=intrinsics, fov=fov, max_depth=args.max_depth)


def run_options(args: argparse.Namespace, address: Optional[tuple[str, int]] = None):
    """The :class:`flashdepth.apps.pipeline.RunOptions` of ``add_run_options``' flags (``address``: where
    the live page listens, from ``run --serve``)."""
    from flashdepth.io.sinks import OutputOptions
    from flashdepth.apps.pipeline import RunOptions

    output_options = OutputOptions(colormap=args.colormap, unprojection=parse_unprojection(args),
                                   ply_every=args.ply_every, address=address or OutputOptions.address)
    return RunOptions(outputs=parse_save(args.save), output_options=output_options, reset_on_cut=args.reset_on_cut,
                      max_frames=args.max_frames, overwrite=args.overwrite, mode=args.mode)


def recovery_reference(args: argparse.Namespace) -> Optional[str]:
    """``--recover-with``, checked: the reference recording given to ``open_source``."""
    if args.recover_with and not Path(args.recover_with).is_file():
        raise UsageError(f"--recover-with {args.recover_with} does not exist; give a complete recording from the same camera")
    return args.recover_with


def session_spec(args: argparse.Namespace):
    """The :class:`flashdepth.inference.session.SessionSpec` of ``add_run_options``' flags."""
    from flashdepth.inference.session import SessionSpec

    return SessionSpec(model=args.model, checkpoint=args.checkpoint, device=args.device, precision=args.precision,
                       resolution=args.resolution, backend=args.backend, metric_from=args.metric_from,
                       anchors=args.anchors)


class Progress:
    """A tqdm bar on a terminal; elsewhere (logs, CI) one plain line every ``every`` seconds.

    The rate and the time left are measured from the end of the first update: the first frame
    carries one-off work (an on-the-fly ONNX export, a compilation, the model's warm-up) that
    would otherwise read as the speed of every frame.
    """

    def __init__(self, total: Optional[int], unit: str = "frame", quiet: bool = False, every: float = 30.0):
        self.total, self.unit, self.quiet, self.every = total, unit, quiet, every
        self.bar = None
        self.count = self.counted_from = 0
        self.start = self.last_line = time.perf_counter()
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1, postfix: Optional[str] = None) -> None:
        """Count ``n`` more; ``postfix`` is shown after the counts (e.g. a rate of another unit)."""
        first = self.count == 0
        self.count += n
        if self.bar is not None:
            if postfix is not None:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(n)
            if first:  # the rate counts from here: the frames after the one-off work
                self.bar.initial, self.bar.start_t = self.bar.n, self.bar._time()
            return
        now = time.perf_counter()
        if first:
            self.start, self.counted_from = now, self.count
        if not self.quiet and now - self.last_line >= self.every:
            from tqdm import tqdm

            self.last_line = now
            print(tqdm.format_meter(self.count, self.total, now - self.start, unit=self.unit, postfix=postfix,
                                    initial=self.counted_from), file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        """A message on stderr that does not break the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
