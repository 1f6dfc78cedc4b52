"""Throughput of `flashdepth batch` (local engine, Ray) against a plain shell loop of `flashdepth run`.

Makes a small corpus (N clips of T frames, moving colour patterns, H.264) and a checkpoint with
random weights (speed does not depend on the values): FlashDepth-S in the published layout, or
``--model tiny``, the tests' tiny FlashDepth-S-shaped model (tests/conftest.py), whose frames cost
little, so that what differs between the modes (start-up, model loading, scheduling, decoding
and encoding) shows. Then runs the same corpus, one mode after the other, each in fresh processes
timed end to end (interpreter and model start-up included, as a user sees them):

    python benchmarks/batch.py [--model flashdepth-s|tiny] [--clips 6] [--frames 30] [--size 252x448]
                               [--workers 2] [--modes loop,local1,local,ray] [--save raw,vis] [--threads N] [--repeat R]

and prints clips/min, frames/s and the ratio to the shell loop (medians over R rounds, the modes
taking turns), with the exact commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, height: int, width: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for t in range(frames):
            image = tiles[((ys + 3 * t) // 16) % tiles.shape[0], ((xs + 2 * t) // 16) % tiles.shape[1]]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def model(name: str):
    import flashdepth

    if name == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import TINY, randomize

        return randomize(flashdepth.FlashDepth(TINY["s"]))
    return flashdepth.create_model(name)


def commands(mode: str, clips: list[Path], out: Path, common: list[str], workers: int) -> tuple[str, list[str]]:
    """(shell command, outputs' depth.npy) of one mode."""
    cli = f"{shlex.quote(sys.executable)} -m flashdepth_cli"
    flags = " ".join(map(shlex.quote, common))
    names = " ".join(shlex.quote(str(c)) for c in clips)
    if mode == "loop":
        return (f'for f in {names}; do {cli} run "$f" -o {out}/"$(basename "$f" .mp4)" {flags}; done',
                [str(out / c.stem / "depth.npy") for c in clips])
    engine = {"local1": "--workers 1", "local": f"--workers {workers}",
              "ray": f"--engine ray --workers {workers}"}[mode]
    return f"{cli} batch {names} -o {out} {flags} {engine}", [str(out / c.stem / "depth.npy") for c in clips]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flashdepth-s", choices=["flashdepth-s", "tiny"])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", default="252x448", help="HxW of the clips")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local and ray modes")
    parser.add_argument("--modes", default="loop,local1,local,ray",
                        help="loop (shell loop of `flashdepth run`), local1 (batch, 1 worker), "
                             "local (batch, --workers), ray (batch --engine ray, --workers)")
    parser.add_argument("--save", default="raw,vis")
    parser.add_argument("--threads", type=int,
                        help="OMP_NUM_THREADS for every process (default: torch's own choice, one per core; "
                             "batch workers on the CPU share the cores out)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all modes; the table gives medians")
    args = parser.parse_args()
    import torch
    from flashdepth.inference.weights import save_checkpoint

    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_checkpoint(model(args.model), tmp / f"{args.model}-random.pth")
        clips = []
        for i in range(args.clips):
            clips.append(tmp / "corpus" / f"clip{i}.mp4")
            clips[-1].parent.mkdir(exist_ok=True)
            make_clip(clips[-1], args.frames, h, w, seed=i)
        common = ["--checkpoint", str(ckpt), "--device", args.device, "--save", args.save, "--quiet"]
        total = args.clips * args.frames
        modes = args.modes.split(",")
        env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
        walls: dict[str, list[float]] = {mode: [] for mode in modes}
        shown: dict[str, str] = {}
        for round_ in range(args.repeat):  # the modes take turns, so a change in the machine's load hits all
            for mode in modes:
                out = tmp / f"out-{mode}-{round_}"
                command, outputs = commands(mode, clips, out, common, args.workers)
                start = time.perf_counter()
                done = subprocess.run(command, shell=True, executable="/bin/bash", capture_output=True, text=True,
                                      env=env)
                walls[mode].append(time.perf_counter() - start)
                frames = sum(np.load(p, mmap_mode="r").shape[0] for p in outputs if Path(p).exists())
                if done.returncode != 0 or frames != total:
                    sys.exit(f"{mode} failed (exit {done.returncode}, {frames}/{total} frames):\n{done.stderr[-2000:]}")
                shown[mode] = command.replace(str(tmp), "$TMP").replace(f"out-{mode}-{round_}", f"out-{mode}")
    median = {mode: statistics.median(w) for mode, w in walls.items()}
    base = median[modes[0]]
    print(f"{args.clips} clips x {args.frames} frames at {h}x{w}, {args.model} (random weights), "
          f"--save {args.save}, {args.device}, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={args.threads or 'unset'} ({torch.get_num_threads()} threads in this process), "
          f"median of {args.repeat}")
    print(f"| mode | wall s | clips/min | frames/s | speed vs {modes[0]} | every run, s |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        wall = median[mode]
        runs = ", ".join(f"{x:.1f}" for x in walls[mode])
        print(f"| {mode} | {wall:.1f} | {60 * args.clips / wall:.2f} | {total / wall:.2f} | {base / wall:.2f}x "
              f"| {runs} |")
    print()
    for mode in modes:
        print(f"{mode}: {shown[mode]}")
    print(json.dumps({mode: [round(x, 2) for x in w] for mode, w in walls.items()}))

if __name__ == "__main__":
    main()
