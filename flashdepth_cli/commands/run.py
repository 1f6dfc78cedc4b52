"""`flashdepth run`: depth for every frame of one input, streamed into an output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flashdepth.errors import FrameSizeChangedError
from flashdepth.io.colormap import COLORMAPS
from flashdepth.io.sinks import OUTPUTS
from flashdepth.registry import list_models

from ..common import Progress, UsageError, add_device_options

DEFAULT_SAVE = "vis,raw"
HELP = "depth for every frame of a video, image folder, image, webcam or stream"
DESCRIPTION = """\
Stream INPUT through a model frame by frame, the recurrent state carried from frame to frame,
and write the outputs chosen with --save into OUTDIR. Decoding, the model and encoding run side
by side in bounded queues: memory stays flat whatever the length of the input. Frames are
processed at the model's resolution (see --resolution) and depth is written at the input's size.

outputs (--save, comma-separated):
""" + "\n".join(f"  {f.name:6s} {f.path:10s} {f.description}" for f in OUTPUTS.values())
EXAMPLES = """\
  flashdepth run video.mp4 -o out/                         # FlashDepth (Full); weights download on first use
  flashdepth run video.mp4 -o out/ --model flashdepth-s --save vis,sbs,raw
  flashdepth run frames/ -o out/ --checkpoint iter_14001.pth --save raw,png16
  flashdepth run webcam:0 -o cam/ --model flashdepth-s --device cuda
  flashdepth run lavfi:testsrc=size=640x360:rate=30 -o test/ --max-frames 60   # a synthetic live source
  flashdepth run crashed.mp4 -o out/ --recover-with good.mp4   # an MP4 whose recording was interrupted"""


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


def parse_save(save: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in save.split(",") if s.strip()))
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise UsageError(f"--save {save!r}: unknown output(s) {', '.join(bad) or '(none)'}; choose from {', '.join(OUTPUTS)}")
    return names


def main(args: argparse.Namespace) -> int:
    import torch

    from flashdepth.io.sources import ImageSource, open_source
    from flashdepth.pipeline import RunOptions, RunStats, check_folder, run_to_folder
    from flashdepth.session import DepthSession
    from flashdepth.weights import load_model

    options = RunOptions(outputs=parse_save(args.save), colormap=args.colormap, reset_on_cut=args.reset_on_cut,
                         max_frames=args.max_frames, overwrite=args.overwrite)
    outdir = Path(args.output)
    if args.recover_with and not Path(args.recover_with).is_file():
        raise UsageError(f"--recover-with {args.recover_with} does not exist; give a complete recording from the same camera")
    # fails fast on a missing/unreadable input
    source = open_source(args.input, fps=args.fps, reference=args.recover_with)
    try:
        check_folder(outdir, options.outputs, options.overwrite)
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
        run_to_folder(source, session, outdir, options, on_frame=[lambda frame, depth, s: progress.update()],
                      stats=stats)
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
