"""`flashdepth run`: depth for every frame of one input, streamed into an output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flashdepth.errors import FrameSizeChangedError
from flashdepth.io.sinks import OUTPUTS

from ..common import Progress, UsageError, add_run_options, recovery_reference, run_options, session_spec

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
    add_run_options(p)


def main(args: argparse.Namespace) -> int:
    import torch

    from flashdepth.io.sources import ImageSource, open_source
    from flashdepth.pipeline import RunStats, check_folder, run_to_folder

    options = run_options(args)
    outdir = Path(args.output)
    # fails fast on a missing/unreadable input
    source = open_source(args.input, fps=args.fps, reference=recovery_reference(args))
    try:
        check_folder(outdir, options.outputs, options.overwrite)
        session = session_spec(args).open()
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
        print(f"{session.config.name}: {stats.summary(peak)} -> {outdir}{note}")

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
