"""Peak memory of `flashdepth run` against stream length: it must not grow with the video.

Runs the CLI twice in fresh processes on a live test source (FFmpeg lavfi), N and 10 N frames,
with FlashDepth-S (random weights in the published layout: memory does not depend on the
values), and prints the peak RSS of both and their ratio.

    python benchmarks/memory.py [--frames 100] [--size 252x140]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def run(ckpt: Path, frames: int, size: str, out: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "flashdepth_cli", "run", f"lavfi:testsrc=size={size}:rate=30", "-o", str(out),
           "--checkpoint", str(ckpt), "--device", "cpu", "--save", "raw,vis", "--max-frames", str(frames),
           "--overwrite", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = result.stdout.strip().splitlines()[-1]
    return float(re.search(r"peak RSS (\d+) MiB", line).group(1)), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="252x140", help="WxH of the test source")
    args = parser.parse_args()
    import flashdepth
    from flashdepth.inference.weights import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_checkpoint(flashdepth.create_model("flashdepth-s"), tmp / "s.pth")
        short, short_line = run(ckpt, args.frames, args.size, tmp / "a")
        long, long_line = run(ckpt, 10 * args.frames, args.size, tmp / "b")
    print(short_line)
    print(long_line)
    print(f"peak RSS: {args.frames} frames {short:.0f} MiB, {10 * args.frames} frames {long:.0f} MiB, "
          f"ratio {long / short:.3f} (bound 1.1)")


if __name__ == "__main__":
    main()
