"""Frames per second of the procedural renderer (flashdepth.data.synthetic), on the CPU.

    python benchmarks/synth_speed.py [--sizes 126x224,140x252,252x448] [--clips 4] [--frames 24] [--write]

Each size renders the same clips (seeds 0..clips-1, default scene statistics); the table gives
frames per second over all of them (wall clock) and the CPU time per frame, which other work on a
shared machine disturbs less, and the mean number of primitives per scene. ``--write`` also
times write_synthetic_dataset at the first size (PNG + .npy output, read back by its validation)
into a temporary folder. NumPy decides how many threads it uses; set OMP_NUM_THREADS to compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from flashdepth.data.synthetic import SynthConfig, build_scene, render_clip, write_synthetic_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="126x224,140x252,252x448", help="comma-separated HxW")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--write", action="store_true", help="also time write_synthetic_dataset")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    seeds = list(range(args.clips))
    primitives = np.mean([len(build_scene(s, SynthConfig(frames=args.frames)).primitives) for s in seeds])
    print(f"{args.clips} clips x {args.frames} frames, {primitives:.1f} primitives per scene on average "
          f"(ground included), numpy {np.__version__}")
    print("| size (HxW) | frames/s (wall) | ms/frame (wall) | ms/frame (CPU) |")
    print("|---|---|---|---|")
    for h, w in sizes:
        config = SynthConfig(height=h, width=w, frames=args.frames)
        list(render_clip(0, SynthConfig(height=h, width=w, frames=2)))  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        count = sum(1 for s in seeds for _ in render_clip(s, config))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"| {h}x{w} | {count / elapsed:.1f} | {1000 * elapsed / count:.1f} | {1000 * cpu / count:.1f} |")
    if args.write:
        h, w = sizes[0]
        config = SynthConfig(height=h, width=w, frames=args.frames)
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            report = write_synthetic_dataset(root, {"train": seeds}, config)
            elapsed = time.perf_counter() - start
        print(f"write_synthetic_dataset at {h}x{w}: {report['frames'] / elapsed:.1f} frames/s "
              f"({report['frames']} frames, sky fraction {report['sky_fraction']:.2f})")


if __name__ == "__main__":
    main()
