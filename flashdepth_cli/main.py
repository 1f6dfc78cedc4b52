"""The ``flashdepth`` command line. Exit codes: 0 success, 2 bad input or usage, 1 internal
error, 130 interrupted (outputs finalised). User errors print one line; ``--debug`` shows the
traceback."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from flashdepth.errors import FlashDepthError

DEFAULT_SAVE = "vis,raw"


class UsageError(FlashDepthError):
    pass


def _parser() -> argparse.ArgumentParser:
    from flashdepth.evaluate import PRESETS
    from flashdepth.io.colormap import COLORMAPS
    from flashdepth.registry import list_models

    parser = argparse.ArgumentParser(prog="flashdepth", description="Streaming video depth estimation (FlashDepth).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="depth for every frame of a video, image folder, image, webcam or stream")
    run.add_argument("input", help="video file, image folder, image, glob, webcam:N, stream URL or lavfi:EXPR")
    run.add_argument("-o", "--output", required=True, help="output folder")
    run.add_argument("--model", choices=list_models(),
                     help="model variant (default: flashdepth, or what --checkpoint holds)")
    run.add_argument("--checkpoint", help="weights file (default: download the published weights)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    run.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                     help="default: bf16 autocast on CUDA, fp32 elsewhere")
    run.add_argument("--resolution", type=int, help="process at this short side (depth is still returned at the input's size)")
    run.add_argument("--save", default=DEFAULT_SAVE, help=f"comma list of raw, vis, sbs, png16, exr (default {DEFAULT_SAVE})")
    run.add_argument("--colormap", default="inferno", choices=COLORMAPS)
    run.add_argument("--fps", type=float, default=30.0, help="frame rate of image inputs (default 30)")
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.add_argument("--reset-on-cut", action="store_true", help="reset the stream state at detected shot cuts")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--debug", action="store_true", help="show tracebacks")

    ev = sub.add_parser("eval", help="score models on sequence folders (the paper's protocol)")
    ev.add_argument("--data", nargs="+", required=True, help="dataset folders (with dataset.json) or sequence folders")
    ev.add_argument("--model", nargs="+", required=True, metavar="NAME[=CHECKPOINT]",
                    help="one or more models, side by side; NAME=PATH uses that weights file")
    ev.add_argument("--checkpoint", help="weights file for a single --model")
    ev.add_argument("--split", default="test", help="split of dataset.json to score (default test)")
    ev.add_argument("--preset", choices=PRESETS,
                    help="evaluation resolution (default: 2k for flashdepth, base otherwise)")
    ev.add_argument("--max-depth", type=float, default=70.0, help="depth cap in the fit and the metrics (default 70)")
    ev.add_argument("--dataset-max-depth", action="append", default=[], metavar="DATASET=VALUE",
                    help="per-dataset depth cap, e.g. sintel=70")
    ev.add_argument("--per-frame-align", action="store_true", help="fit scale and shift per frame, not per sequence")
    ev.add_argument("--max-frames", type=int, help="score at most this many frames of each sequence")
    ev.add_argument("--json", help="write one record per model and sequence to this file")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--precision", choices=["fp32", "fp16", "bf16"])
    ev.add_argument("--debug", action="store_true")

    conv = sub.add_parser("convert", help="convert a dataset from its native layout to sequence folders")
    conv.add_argument("dataset", help="mvs-synth, spring, dynamicreplica, tartanair, pointodyssey, sintel, eth3d, waymo, unreal4k, urbansyn")
    conv.add_argument("source", help="the dataset's folder in its native layout")
    conv.add_argument("output", help="data root; the dataset is written to OUTPUT/<dataset>/")
    conv.add_argument("--debug", action="store_true")

    tr = sub.add_parser("train", help="train (stage 1 or 2); runs alone or under torchrun")
    tr.add_argument("config", help="TOML recipe, e.g. configs/stage1-s.toml")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. steps=2000 optim.lr_vit=1e-5")
    tr.add_argument("--resume", help="continue from a checkpoint written by a previous run")
    tr.add_argument("--debug", action="store_true")

    models = sub.add_parser("models", help="list the model variants")
    models.add_argument("--debug", action="store_true")
    return parser


def _outputs(save: str) -> list[str]:
    from flashdepth.io.sinks import OUTPUTS

    names = [s.strip() for s in save.split(",") if s.strip()]
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise UsageError(f"--save {save!r}: unknown output(s) {', '.join(bad) or '(none)'}; choose from {', '.join(OUTPUTS)}")
    return list(dict.fromkeys(names))


def _prepare_outdir(outdir: Path, outputs: list[str], overwrite: bool) -> None:
    import shutil

    from flashdepth.io.sinks import OUTPUT_FILES

    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / ".flashdepth-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to output folder {outdir}: {e.strerror or e}") from None
    existing = [outdir / OUTPUT_FILES[n] for n in outputs if (outdir / OUTPUT_FILES[n]).exists()]
    if existing and not overwrite:
        raise UsageError(f"{', '.join(str(p) for p in existing)} already exist(s); pass --overwrite to replace")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _progress(quiet: bool, total: Optional[int]):
    last = [0.0]

    def show(stats) -> None:
        now = time.perf_counter()
        if quiet or now - last[0] < 0.25:
            return
        last[0] = now
        of = f"/{total}" if total else ""
        sys.stderr.write(f"\r{stats.frames}{of} frames  {stats.fps:.2f} FPS ")
        sys.stderr.flush()

    return show


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from flashdepth.io.sinks import open_sinks
    from flashdepth.io.sources import open_source
    from flashdepth.pipeline import run_stream
    from flashdepth.session import DepthSession, resolve_device
    from flashdepth.weights import load_model

    outputs = _outputs(args.save)
    outdir = Path(args.output)
    source = open_source(args.input, fps=args.fps)  # fails fast on a missing/unreadable input
    try:
        _prepare_outdir(outdir, outputs, args.overwrite)
        device = resolve_device(args.device)
        model = load_model(args.checkpoint or args.model or "flashdepth", variant=args.model)
        session = DepthSession(model, device=str(device), precision=args.precision, resolution=args.resolution)
        if args.compile:
            session.model = torch.compile(session.model)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        frames = _Limited(source, args.max_frames) if args.max_frames else source
        sinks = open_sinks(outdir, outputs, source.fps, source.time_base, args.colormap)
    except BaseException:
        source.close()
        raise
    show = _progress(args.quiet or not sys.stderr.isatty(), source.frame_count)
    try:
        stats = run_stream(frames, session, sinks, reset_on_cut=args.reset_on_cut, on_frame=show)
    except KeyboardInterrupt:
        sys.stderr.write(f"\ninterrupted: outputs in {outdir} hold the frames done\n")
        return 130
    finally:
        if not args.quiet and sys.stderr.isatty():
            sys.stderr.write("\n")
    if stats.frames == 0:
        raise UsageError(f"{args.input} has no frames")
    warning = source.truncation_warning() if not args.max_frames else None
    if warning:
        print(f"flashdepth: warning: {warning}", file=sys.stderr)
    peak_cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    print(f"{model.config.name}: {stats.summary(peak_cuda)} -> {outdir}")
    return 0


class _Limited:
    """The first ``n`` frames of a source, keeping its timing attributes."""

    def __init__(self, source, n: int):
        self.source, self.n = source, n

    def __iter__(self):
        for i, frame in enumerate(self.source):
            if i >= self.n:
                return
            yield frame

    def close(self) -> None:
        self.source.close()


def _eval_targets(paths: list[str], split: str):
    from flashdepth.data.sequence import DatasetFolder, SequenceFolder

    sequences = []
    for p in paths:
        path = Path(p)
        if (path / "dataset.json").is_file():
            sequences += DatasetFolder(path).sequences(split)
        elif (path / "sequence.json").is_file():
            sequences.append(SequenceFolder(path))
        else:
            raise UsageError(f"{path} is neither a dataset folder (dataset.json) nor a sequence folder (sequence.json); "
                             "convert the data with `flashdepth convert` first")
    if not sequences:
        raise UsageError(f"no sequences in split {split!r} of {', '.join(paths)}")
    return sequences


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from flashdepth.evaluate import EvalOptions, default_preset, evaluate_sequence, markdown_table, summarize
    from flashdepth.registry import list_models
    from flashdepth.session import DepthSession
    from flashdepth.weights import load_model

    caps = {}
    for item in args.dataset_max_depth:
        name, _, value = item.partition("=")
        try:
            caps[name] = float(value)
        except ValueError:
            raise UsageError(f"--dataset-max-depth {item!r}: expected DATASET=NUMBER") from None
    specs = []
    for item in args.model:
        name, _, path = item.partition("=")
        specs.append((name, path or (args.checkpoint if len(args.model) == 1 else None)))
    sequences = _eval_targets(args.data, args.split)
    records = []
    for name, path in specs:
        model = load_model(path or name, variant=name if name in list_models() else None)
        session = DepthSession(model, device=args.device, precision=args.precision)
        for seq in sequences:
            opts = EvalOptions(preset=args.preset or default_preset(model.config.name),
                               max_depth=caps.get(seq.dataset, args.max_depth), per_frame=args.per_frame_align,
                               max_frames=args.max_frames)
            result = evaluate_sequence(session, seq, opts)
            record = {"model": name, "dataset": seq.dataset, "sequence": seq.name, **result}
            records.append(record)
            print(f"{name} {seq.dataset}/{seq.name}: AbsRel {record['abs_rel']:.4f} delta1 {record['delta1']:.4f}",
                  file=sys.stderr)
    columns = ["model", "dataset", "sequence", "frames", "abs_rel", "delta1", "boundary_f1", "scale_std", "tae"]
    print("## Per sequence\n")
    print(markdown_table(records, columns))
    print("\n## Per dataset (mean over sequences)\n")
    print(markdown_table(summarize(records), ["model", "dataset", "sequences", "frames", "abs_rel", "delta1",
                                               "boundary_f1", "scale_std", "tae"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import json

    from flashdepth.data.convert import convert

    report = convert(args.dataset, args.source, args.output)
    print(json.dumps(report))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    return train(args.config, args.overrides, args.resume)


def cmd_models(args: argparse.Namespace) -> int:
    from flashdepth.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:26s} {spec.description}  [{spec.weights.repo_id}/{spec.weights.filename}]")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return {"run": cmd_run, "eval": cmd_eval, "convert": cmd_convert, "train": cmd_train,
                "models": cmd_models}[args.command](args)
    except FlashDepthError as e:
        if getattr(args, "debug", False):
            raise
        print(f"flashdepth: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flashdepth: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        print(f"flashdepth: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
