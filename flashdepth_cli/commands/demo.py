"""`flashdepth demo`: the whole loop offline, on a synthetic clip with exact depth."""

from __future__ import annotations

import argparse

HELP = "offline demo: the bundled tiny model on a rendered clip, scored against exact depth"
DESCRIPTION = """\
Render a held-out synthetic clip (a seed never used in training), stream it through the bundled
demonstration model flashdepth-tiny-synthetic (trained by this package on synthetic scenes only;
docs/tiny-synthetic.md), write OUTDIR/demo.mp4 (input | prediction | ground truth, one colour
scale, and a strip with the model's depth scale per frame with its state carried and reset) and
OUTDIR/scale.png, and print AbsRel, delta1, boundary F1 and the temporal metrics against the exact
ground truth with the evaluation protocol. Needs no network and no download."""
EXAMPLES = """\
  flashdepth demo
  flashdepth demo -o demo/ --seed 4243 --frames 96
  flashdepth run video.mp4 -o out/ --model flashdepth-s      # then the published weights on a real video"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from flashdepth.apps.demo import DEMO_SEED

    p.add_argument("-o", "--output", default="demo", metavar="OUTDIR", help="output folder (default: demo)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"which clip to render (default: {DEMO_SEED})")
    p.add_argument("--frames", type=int, default=48, help="clip length at 10 fps (default: 48)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, mps (default: auto)")


def main(args: argparse.Namespace) -> int:
    from flashdepth.apps.demo import run_demo
    from flashdepth.metrics import METRICS
    from flashdepth_cli.common import UsageError

    if args.seed < 0 or args.frames < 2:
        raise UsageError(f"--seed {args.seed} --frames {args.frames}: the seed must be >= 0 and the clip 2 frames or more")
    result = run_demo(args.output, seed=args.seed, frames=args.frames, device=args.device)
    print(f"wrote {result.video} ({result.frames} frames: input | prediction | ground truth) in {result.seconds:.1f} s")
    if result.plot is not None:
        print(f"wrote {result.plot} (the model's depth scale per frame, state carried vs reset)")
    import numpy as np

    for label, values in result.scales.items():
        v = np.array(values, dtype=float)
        v = v[np.isfinite(v)]
        spread = float(np.std(np.log(v))) if v.size else float("nan")
        print(f"  depth scale, state {label:8s} mean |log error| {np.mean(np.abs(np.log(v))):.3f}, "
              f"frame-to-frame spread {spread:.3f}")
    for name, metric in METRICS.items():
        value = result.metrics.get(name)
        if value is not None:
            arrow = "higher is better" if metric.higher_is_better else "lower is better"
            print(f"  {name:12s} {value:.4f}   ({arrow}) {metric.description}")
    return 0
