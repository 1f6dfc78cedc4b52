"""`flashdepth run`: depth for every frame of one input, streamed into an output folder."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Optional

from flashdepth.errors import ConfigError, FrameSizeChangedError
from flashdepth.geometry import DEFAULT_FOV, DEFAULT_MAX_DEPTH, Intrinsics, Unprojection
from flashdepth.io.colormap import COLORMAPS
from flashdepth.io.sinks import DEFAULT_PLY_EVERY, OUTPUTS
from flashdepth.registry import list_models

from ..common import Progress, UsageError, add_device_options

DEFAULT_SAVE = "vis,raw"
_PATH_WIDTH = max(len(f.path) for f in OUTPUTS.values())
HELP = "depth for every frame of a video, image folder, image, webcam or stream"
DESCRIPTION = """\
Stream INPUT through a model frame by frame, the recurrent state carried from frame to frame,
and write the outputs chosen with --save into OUTDIR. Decoding, the model and encoding run side
by side in bounded queues: memory stays flat whatever the length of the input. Frames are
processed at the model's resolution (see --resolution) and depth is written at the input's size.

outputs (--save, comma-separated):
""" + "\n".join(f"  {f.name:6s} {f.path:{_PATH_WIDTH}s}  {f.description}" for f in OUTPUTS.values()) + f"""

watching it live: --serve PORT shows input and depth side by side in a browser while the run
goes on (http://127.0.0.1:PORT/); --view rerun streams into a Rerun viewer it starts. Neither
slows the run nor changes its outputs: a viewer that falls behind skips frames.

3D (ply, rerun, --view rerun): depth in metres = 100 / the model's output (the published
models' inverse-depth scale); pixels nearer 0 than 100 / --max-depth (the sky) have no point.
The camera is --intrinsics, else a pinhole with a horizontal field of view of --fov degrees
(default {DEFAULT_FOV:g}) centred on the image."""
EXAMPLES = """\
  flashdepth run video.mp4 -o out/                         # FlashDepth (Full); weights download on first use
  flashdepth run video.mp4 -o out/ --model flashdepth-s --save vis,sbs,raw
  flashdepth run frames/ -o out/ --checkpoint iter_14001.pth --save raw,png16
  flashdepth run webcam:0 -o cam/ --model flashdepth-s --device cuda
  flashdepth run lavfi:testsrc=size=640x360:rate=30 -o test/ --max-frames 60   # a synthetic live source
  flashdepth run crashed.mp4 -o out/ --recover-with good.mp4   # an MP4 whose recording was interrupted
  flashdepth run webcam:0 -o cam/ --model flashdepth-s --serve 8080         # watch at http://127.0.0.1:8080/
  flashdepth run video.mp4 -o out/ --save raw,rerun,ply --fov 70            # then: rerun out/recording.rrd"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file, image folder, image, glob, webcam:N, stream URL or lavfi:EXPR")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--model", choices=list_models(), help="model variant (default: flashdepth, or what --checkpoint holds)")
    p.add_argument("--checkpoint", help="weights file (default: download the published weights of --model)")
    add_device_options(p)
    p.add_argument("--resolution", type=int, metavar="N",
                   help="process at short side N (depth is still written at the input's size)")
    p.add_argument("--save", default=DEFAULT_SAVE, metavar="LIST",
                   help=f"outputs, comma-separated, from: {', '.join(OUTPUTS)} (default {DEFAULT_SAVE})")
    p.add_argument("--colormap", default="inferno", choices=COLORMAPS, help="colour map of vis and sbs (default inferno)")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate given to image inputs and to recovered videos that do not say theirs (default 30)")
    p.add_argument("--recover-with", metavar="GOOD.mp4",
                   help="for an MP4/MOV whose recording was interrupted (no index): a complete recording made by the "
                        "same camera with the same settings, whose decoder configuration rebuilds the frames")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--reset-on-cut", action="store_true", help="reset the stream state at detected shot cuts")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster frames on GPU)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    live = p.add_argument_group("live view and 3D")
    live.add_argument("--serve", metavar="[HOST:]PORT",
                      help="serve a live page of input and depth on PORT (0: a free one), on 127.0.0.1 unless "
                           "HOST is given (other addresses let anyone who reaches them watch)")
    live.add_argument("--view", choices=VIEWERS, help="stream into a viewer it starts: rerun (pip install 'flashdepth[rerun]')")
    camera = live.add_mutually_exclusive_group()
    camera.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                        help="camera intrinsics in pixels of the input (pixel centres at integer coordinates)")
    camera.add_argument("--fov", type=float, metavar="DEG",
                        help=f"horizontal field of view when --intrinsics is not given (default {DEFAULT_FOV:g})")
    live.add_argument("--ply-every", type=int, default=DEFAULT_PLY_EVERY, metavar="N",
                      help=f"ply: a point cloud of frames 0, N, 2N, ... (default {DEFAULT_PLY_EVERY})")
    live.add_argument("--max-depth", type=float, default=DEFAULT_MAX_DEPTH, metavar="M",
                      help=f"3D outputs leave out points farther than M metres (default {DEFAULT_MAX_DEPTH:g})")


VIEWERS = ("rerun",)


def parse_serve(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or int(port) > 65535 or (_ and not host):
        raise UsageError(f"--serve {text!r}: give PORT or HOST:PORT, e.g. --serve 8080 or --serve 0.0.0.0:8080")
    return host or "127.0.0.1", int(port)


def parse_unprojection(args: argparse.Namespace) -> Unprojection:
    """--intrinsics, --fov and --max-depth as the library's Unprojection (errors in flags)."""
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


def parse_save(save: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in save.split(",") if s.strip()))
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise UsageError(f"--save {save!r}: unknown output(s) {', '.join(bad) or '(none)'}; choose from {', '.join(OUTPUTS)}")
    return names


def main(args: argparse.Namespace) -> int:
    from flashdepth.io.sources import open_source
    from flashdepth.pipeline import RunOptions, check_folder

    if args.ply_every < 1:
        raise UsageError(f"--ply-every {args.ply_every}: give a number of frames, 1 or more")
    serve = parse_serve(args.serve) if args.serve else None
    unprojection = parse_unprojection(args)
    options = RunOptions(outputs=parse_save(args.save), colormap=args.colormap, reset_on_cut=args.reset_on_cut,
                         max_frames=args.max_frames, overwrite=args.overwrite, unprojection=unprojection,
                         ply_every=args.ply_every)
    outdir = Path(args.output)
    if args.recover_with and not Path(args.recover_with).is_file():
        raise UsageError(f"--recover-with {args.recover_with} does not exist; give a complete recording from the same camera")
    # fails fast on a missing/unreadable input
    source = open_source(args.input, fps=args.fps, reference=args.recover_with)
    with contextlib.ExitStack() as viewers:
        try:
            check_folder(outdir, options.outputs, options.overwrite)  # before a viewer takes a port or a window
            observers = start_viewers(viewers, serve, args.view, args.colormap, unprojection)
        except BaseException:
            source.close()
            raise
        return _run(args, source, options, outdir, observers)


def start_viewers(stack: contextlib.ExitStack, serve: Optional[tuple[str, int]], view: Optional[str], colormap: str,
                  unprojection: Unprojection) -> list:
    """The observers asked for, started, closed by ``stack`` (on Ctrl-C too)."""
    observers = []
    if serve is not None:
        from flashdepth.viewer import LiveViewer

        live = stack.enter_context(LiveViewer(host=serve[0], port=serve[1], colormap=colormap))
        if not live.is_loopback:
            print(f"flashdepth: warning: --serve {serve[0]}: anyone who can reach this address can watch the stream "
                  "(there is no password); to watch from another machine, prefer an SSH tunnel to 127.0.0.1",
                  file=sys.stderr)
        print(f"flashdepth: live view at {live.url}", file=sys.stderr, flush=True)
        observers.append(live)
    if view == "rerun":
        from flashdepth.viewer import RerunViewer

        observers.append(stack.enter_context(RerunViewer(unprojection)))
    return observers


def _run(args: argparse.Namespace, source, options, outdir: Path, observers: list) -> int:
    import torch

    from flashdepth.io.sources import ImageSource
    from flashdepth.pipeline import RunStats, run_to_folder
    from flashdepth.session import DepthSession
    from flashdepth.weights import load_model

    try:
        model = load_model(args.checkpoint or args.model or "flashdepth", variant=args.model)
        session = DepthSession(model, device=args.device, precision=args.precision, resolution=args.resolution)
        if args.compile:
            session.model = torch.compile(session.model)
    except BaseException:
        source.close()
        raise
    cuda = session.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(session.device)
    total = source.frame_count if not args.max_frames else min(args.max_frames, source.frame_count or args.max_frames)
    progress = Progress(total, quiet=args.quiet)
    stats = RunStats()

    def summary(note: str = "") -> None:
        peak = torch.cuda.max_memory_allocated(session.device) if cuda else None
        print(f"{model.config.name}: {stats.summary(peak)} -> {outdir}{note}")

    try:
        run_to_folder(source, session, outdir, options,
                      on_frame=[lambda frame, depth, s: progress.update(), *observers], stats=stats)
    except KeyboardInterrupt:
        progress.close()
        if stats.frames:
            summary(" (interrupted)")
        print(f"flashdepth: interrupted: {outdir} holds the {stats.frames} frame(s) done", file=sys.stderr)
        return 130
    except FrameSizeChangedError as e:
        progress.close()
        if stats.frames:
            summary(" (stopped)")
        kind = "folder" if isinstance(source, ImageSource) else "input"
        raise UsageError(f"frame {e.index} of {args.input} is {e.size[0]}x{e.size[1]} but earlier frames are "
                         f"{e.expected[0]}x{e.expected[1]}: a {kind} is one stream and needs frames of one size; "
                         f"resize them to one size, or run each size as its own input "
                         f"({stats.frames} frame(s) written to {outdir})") from None
    except Exception:
        progress.close()
        if stats.frames:
            summary(" (stopped by the error below)")
        raise
    progress.close()
    warnings = [source.recovery_note(), source.truncation_warning() if not args.max_frames else None]
    for warning in filter(None, warnings):
        print(f"flashdepth: warning: {warning}", file=sys.stderr)
    summary()
    return 0
