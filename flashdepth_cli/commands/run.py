"""`flashdepth run`: depth for every frame of one input, streamed into an output folder."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from flashdepth.errors import FrameSizeChangedError
from flashdepth.geometry import DEFAULT_FOV
from flashdepth.io.sinks import OUTPUTS
from flashdepth.io.sources import SOURCE_KINDS
from flashdepth.utils import first_line
from flashdepth.viewer import VIEWERS

from ..common import Progress, UsageError, add_run_options, recovery_reference, run_options, session_spec

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

units: OUTDIR/depth.json records the unit of every output (the model row's unit, or metres with
--metric-from / --anchors). 3D (ply, rerun, --view rerun, --serve's legend): a metric stream is
used as it is (exact metres); a relative stream's metres are approximate, 100 / the model's output
(the published models' inverse-depth scale). Points beyond --max-depth metres (the sky) are left out.
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
  flashdepth run video.mp4 -o out/ --save raw,rerun,ply --fov 70            # then: rerun out/recording.rrd
  flashdepth run drive.mp4 -o out/ --model flashdepth-s --metric-from depth-anything-v2-metric-outdoor-small:10
  flashdepth run scan.mp4 -o out/ --model flashdepth-s --anchors lidar.csv --save raw,ply   # metres from sparse depths"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="; ".join(k.description for k in SOURCE_KINDS.values()))
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    add_run_options(p)
    live = p.add_argument_group("watching it live")
    live.add_argument("--serve", metavar="[HOST:]PORT",
                      help="serve a live page of input and depth on PORT (0: a free one), on 127.0.0.1 unless "
                           "HOST is given (other addresses let anyone who reaches them watch)")
    live.add_argument("--view", choices=list(VIEWERS), metavar="NAME",
                      help="stream into a viewer it starts: " + "; ".join(f"{v.name}: {v.description}" for v in VIEWERS.values()))


def parse_serve(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or int(port) > 65535 or (_ and not host):
        raise UsageError(f"--serve {text!r}: give PORT or HOST:PORT, e.g. --serve 8080 or --serve 0.0.0.0:8080")
    return host or "127.0.0.1", int(port)


def main(args: argparse.Namespace) -> int:
    from flashdepth.io.sources import open_source
    from flashdepth.apps.pipeline import check_folder
    from flashdepth.inference.modes import check_run

    serve = parse_serve(args.serve) if args.serve is not None else None  # --serve '' is an error, not "no server"
    options = run_options(args, address=serve)
    outdir = Path(args.output)
    anchors = _read_anchors(args)  # a bad file fails before the input is opened
    # fails fast on a missing/unreadable input
    source = open_source(args.input, fps=args.fps, reference=recovery_reference(args))
    if anchors is not None and source.frame_count and not args.max_frames:
        try:
            anchors.check_frames(source.frame_count)  # rows for frames the input does not have
        except BaseException:
            source.close()
            raise
    with contextlib.ExitStack() as stack:
        try:
            check_run(options.mode, source)  # a live input in a windowed mode: before the model loads
            check_folder(outdir, options)  # before a viewer takes a port or a window
            viewers = start_viewers(stack, viewer_names(args), options)
        except BaseException:
            source.close()
            raise
        return _run(args, source, options, outdir, viewers)


def _read_anchors(args: argparse.Namespace):
    if not args.anchors:
        return None
    from flashdepth.metric import read_anchors

    return read_anchors(args.anchors)


def viewer_names(args: argparse.Namespace) -> list[str]:
    """The rows of VIEWERS asked for: --view NAME, and ``live`` for --serve."""
    return [name for name in (args.view, "live" if args.serve is not None else None) if name]


def start_viewers(stack: contextlib.ExitStack, names: list[str], options) -> list:
    """(row, viewer) of each viewer asked for, started, closed by ``stack`` (on Ctrl-C too)."""
    from flashdepth.errors import ServeAddressError, ViewerError
    from flashdepth.viewer import open_viewers

    opened = []
    for name in names:  # one at a time: a viewer that cannot start here is left out, the others run
        try:
            started = open_viewers([name], options.output_options)
        except ServeAddressError:  # the address asked for: the user's to change, before anything runs
            raise
        except ViewerError as e:  # a viewer never fails the run
            print(f"flashdepth: warning: --view {name}: {e}; the run goes on without it", file=sys.stderr)
            continue
        for _, viewer in started:
            stack.callback(_close_viewer, viewer)
        opened += started
    for _, viewer in opened:
        url = getattr(viewer, "url", None)  # a viewer that serves a page says where
        if url is None:
            continue
        if not viewer.is_loopback:
            print(f"flashdepth: warning: --serve {viewer.host}: anyone who can reach this address can watch the "
                  "stream (there is no password); to watch from another machine, prefer an SSH tunnel to 127.0.0.1",
                  file=sys.stderr)
        print(f"flashdepth: live view at {url}", file=sys.stderr, flush=True)
    return opened


def _close_viewer(viewer) -> None:
    """A viewer never fails the run: an error while closing it is a warning."""
    try:
        viewer.close()
    except Exception as e:
        print(f"flashdepth: warning: a viewer could not be closed cleanly: {first_line(e)}", file=sys.stderr)
    error = getattr(viewer, "error", None)
    if error is not None:
        print(f"flashdepth: warning: the {type(viewer).__name__} stopped receiving frames ({first_line(error)}); "
              "the outputs are complete", file=sys.stderr)


def _run(args: argparse.Namespace, source, options, outdir: Path, viewers: list) -> int:
    import torch

    from flashdepth.io.sources import ImageSource
    from flashdepth.apps.pipeline import RunStats, run_to_folder

    try:
        session = session_spec(args).open()
    except BaseException:
        source.close()
        raise
    cuda = session.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(session.device)
    total = source.frame_count if not args.max_frames else min(args.max_frames, source.frame_count or args.max_frames)
    progress = Progress(total, quiet=args.quiet)

    def summary(stats: RunStats, note: str = "") -> None:
        peak = torch.cuda.max_memory_allocated(session.device) if cuda else None
        print(f"{session.config.name}: {stats.summary(peak)} -> {outdir}{note}")

    try:
        stats = run_to_folder(source, session, outdir, options, on_frame=[lambda frame, depth, s: progress.update()],
                              viewers=viewers)
    except KeyboardInterrupt as e:
        progress.close()
        done = getattr(e, "stats", RunStats())
        if done.frames:
            summary(done, " (interrupted)")
        print(f"flashdepth: interrupted: {outdir} holds the {done.frames} frame(s) done", file=sys.stderr)
        return 130
    except FrameSizeChangedError as e:
        progress.close()
        done = getattr(e, "stats", RunStats())
        if done.frames:
            summary(done, " (stopped)")
        kind = "folder" if isinstance(source, ImageSource) else "input"
        raise UsageError(f"frame {e.index} of {args.input} is {e.size[0]}x{e.size[1]} but earlier frames are "
                         f"{e.expected[0]}x{e.expected[1]}: a {kind} is one stream and needs frames of one size; "
                         f"resize them to one size, or run each size as its own input "
                         f"({done.frames} frame(s) written to {outdir})") from None
    except Exception as e:
        progress.close()
        done = getattr(e, "stats", RunStats())
        if done.frames:
            summary(done, " (stopped by the error below)")
        raise
    progress.close()
    for warning in source.warnings(read_to_end=not args.max_frames):
        print(f"flashdepth: warning: {warning}", file=sys.stderr)
    summary(stats)
    return 0
