"""`flashdepth batch`: depth for a whole corpus, resumable and fault-tolerant, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flashdepth.batch import ENGINES
from flashdepth.batch.engines import engine_options, engines_taking

from ..common import Progress, option_flag as _flag, UsageError, add_run_options, recovery_reference, run_options, session_spec

HELP = "depth for many inputs: resumable, fault-tolerant, on this machine or a Ray cluster"
DESCRIPTION = """\
Run every INPUT (and every line of --list) as `flashdepth run` would, each into its own folder
OUTROOT/<name>/ (the input's file or folder name; a short hash of the full path tells apart
inputs of the same name). Each input is one stream, processed start to end by one worker that
loaded the model once; its folder appears, by a rename, only once complete.

OUTROOT/manifest.jsonl gets one line per input and attempt (input, output, status done / failed /
skipped, frames, seconds, fps, worker, error); an input's last line is its state. Running the same
command again skips the inputs that are done and verified on disk, and redoes the others. A bad
input is recorded as failed and does not stop the rest; an input whose worker died is tried again
(--retries). Exit code 0 when all inputs are done, 1 when some failed, 2 for bad arguments,
130 when interrupted (what was finished stays; run the command again to complete the batch).

engines (--engine):
""" + "\n".join(f"  {e.name:6s} {e.description}" for e in ENGINES.values())
EXAMPLES = """\
  flashdepth batch clips/*.mp4 -o depth/ --model flashdepth-s --save raw
  find /data -name '*.mp4' | flashdepth batch --list - -o /data/depth --model flashdepth-s --workers 2
  flashdepth batch --list corpus.txt -o /shared/depth --engine ray --ray-address auto --gpus-per-worker 1
  flashdepth batch clips/*.mp4 -o depth/ --model flashdepth-s --metric-from depth-anything-v2-metric-indoor-small:5"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, image folders, images, globs or stream URLs (as `flashdepth run` takes)")
    p.add_argument("--list", metavar="FILE", help="a file of inputs, one per line ('-': standard input); "
                                                  "blank lines and lines starting with # are skipped")
    p.add_argument("-o", "--output", required=True, metavar="OUTROOT",
                   help="output root: a folder per input, and manifest.jsonl")
    add_run_options(p)
    p.add_argument("--engine", default="local", choices=list(ENGINES), help="where the workers run (default local)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes, each holding the model (default: one per GPU, else one per 4 CPU cores)")
    p.add_argument("--retries", type=int, default=1, metavar="R",
                   help="times an input is tried again when its worker dies while processing it (default 1)")
    for option in engine_options():
        owners = " or ".join(f"--engine {name}" for name in engines_taking(option))
        p.add_argument(_flag(option.name), type=option.type, metavar=option.metavar, help=f"{owners}: {option.description}")


def read_list(path: str) -> list[str]:
    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--list {path}: cannot read it ({e.strerror or e})") from None
    with f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line and not line.startswith("#")]


def _check(args: argparse.Namespace) -> list[str]:
    inputs = list(args.inputs) + (read_list(args.list) if args.list else [])
    if not inputs:
        raise UsageError("no inputs: give INPUT paths, or --list FILE")
    if args.anchors:
        raise UsageError(f"--anchors {args.anchors}: anchors belong to one input's frames; run each input with "
                         "`flashdepth run INPUT --anchors FILE`, or use --metric-from for a whole batch")
    engine = ENGINES[args.engine]
    for option in engine_options():  # the engine rows say which engine takes which option
        if getattr(args, option.name) is not None and option not in engine.options:
            owners = " or ".join(f"--engine {name}" for name in engines_taking(option))
            raise UsageError(f"{_flag(option.name)} is an option of {owners}")
    if engine.assigns_gpus and args.device.startswith("cuda:"):
        raise UsageError(f"--device {args.device}: the {engine.name} engine gives each worker its GPUs; use --device "
                         "auto or cuda" + "".join(f" with {_flag(o.name)}" for o in engine.options if o.type is float))
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give 1 or more")
    if args.retries < 0:
        raise UsageError(f"--retries {args.retries}: give 0 or more")
    return inputs


class _Display:
    """The progress bar (inputs done, frames/s, time left) and the lines about failures."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress = None
        self.final: dict[str, object] = {}  # input -> its final record in this run
        self.frames = 0
        self.start = time.perf_counter()

    def warn(self, message: str) -> None:
        line = f"flashdepth: warning: {message}"
        if self.progress is not None:
            self.progress.write(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def started(self, todo: int, settled: int) -> None:
        self.progress = Progress(todo, unit="input", quiet=self.quiet)

    def record(self, record, final: bool) -> None:
        if final:
            self.final[record.input] = record
        if record.status == "failed":
            retry = "" if final else " (trying again)"
            self.progress.write(f"flashdepth: failed: {record.input}: {record.error}{retry}")
        if record.warning:
            self.progress.write(f"flashdepth: warning: {record.warning}")
        if final and record.attempt > 0:  # skipped inputs and refused ones (attempt 0) are not work done
            self.frames += record.frames
            elapsed = time.perf_counter() - self.start
            self.progress.update(1, postfix=f"{self.frames / elapsed:.1f} frames/s" if elapsed > 0 else None)

    def summary(self, manifest: Path, note: str = "") -> None:
        if self.progress is not None:
            self.progress.close()
        counts = {s: sum(1 for r in self.final.values() if r.status == s) for s in ("done", "failed", "skipped")}
        elapsed = time.perf_counter() - self.start
        print(f"batch: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
              f"{self.frames} frames in {elapsed:.1f} s ({self.frames / max(elapsed, 1e-9):.2f} frames/s) "
              f"-> {manifest}{note}")


def main(args: argparse.Namespace) -> int:
    from flashdepth.batch import MANIFEST, BatchJob, run_batch

    inputs = _check(args)
    job = BatchJob(inputs=tuple(inputs), outroot=args.output, session=session_spec(args), options=run_options(args),
                   fps=args.fps, reference=recovery_reference(args), engine=args.engine, workers=args.workers, retries=args.retries,
                   **{o.name: getattr(args, o.name) for o in engine_options()})
    display = _Display(args.quiet)
    manifest = Path(args.output) / MANIFEST
    try:
        summary = run_batch(job, on_record=display.record, on_start=display.started, on_warning=display.warn)
    except KeyboardInterrupt:
        display.summary(manifest, " (interrupted)")
        print("flashdepth: interrupted: finished inputs are kept; run the same command again to complete the batch",
              file=sys.stderr)
        return 130
    except BaseException:
        if display.progress is not None:
            display.progress.close()
        raise
    display.summary(manifest)
    return 1 if summary.count("failed") else 0
