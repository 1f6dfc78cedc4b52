"""One frame in flight against one frame at a time, on the CPU, with a slow decoder stand-in.

    python benchmarks/pipelining.py --model flashdepth-s --size 196x350 --frames 12 [--json out.json]

The decoder stand-in sleeps ``--decode-ms`` per frame (default: the measured compute time of one
frame, the case where overlapping gains the most), as a video decoder would spend that time off
the model's thread. The two loops alternate (sequential, pipelined, sequential, ...) for
``--repeats`` rounds, over the same frames and random weights, and the outputs are compared.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import flashdepth
from flashdepth.inference.session import DepthSession


def decoded(images, seconds: float):
    for image in images:
        time.sleep(seconds)  # the decoder stand-in: off the GIL, like a C decoder
        yield image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="flashdepth-s")
    p.add_argument("--size", default="196x350", help="HxW of the frames (processed as they are)")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--decode-ms", type=float, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    model = flashdepth.create_model(args.model).eval().requires_grad_(False)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.frames)]
    session = DepthSession(model, device="cpu")
    session.step(images[0])  # warm-up
    t = time.perf_counter()
    for image in images[1:4]:
        session.step(image)
    compute_s = (time.perf_counter() - t) / 3
    decode_s = compute_s if args.decode_ms is None else args.decode_ms / 1000
    sequential, pipelined = [], []
    for _ in range(args.repeats):
        session.reset()
        t = time.perf_counter()
        a = [session.step(image) for image in decoded(images, decode_s)]
        sequential.append(time.perf_counter() - t)
        session.reset()
        t = time.perf_counter()
        b = list(session.run(decoded(images, decode_s)))
        pipelined.append(time.perf_counter() - t)
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), "outputs differ"
    session.close()
    record = {"model": args.model, "size": args.size, "frames": args.frames, "threads": torch.get_num_threads(),
              "compute_ms": 1000 * compute_s, "decode_ms": 1000 * decode_s,
              "sequential_s": sequential, "pipelined_s": pipelined,
              "speedup_median": float(np.median(np.array(sequential) / np.array(pipelined))),
              "ideal_speedup": (compute_s + decode_s) / max(compute_s, decode_s) * args.frames / (args.frames + 1)}
    print(json.dumps(record, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
