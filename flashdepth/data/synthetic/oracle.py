"""How much a sequence says about the world's scale that one frame does not: the ideal observer of
the scale-ambiguous family (docs/synthetic.md#scale).

In that family the only scale cue is the reference markers. An observer who could measure every
visible marker's known length exactly in scene units (``h_i / s``: a pillar's height, a tile's
size) would estimate ``log s`` from each one as ``log h - log(h_i / s)``, with h the length's nominal
value in metres, off by the marker's own size error (normal, spread
``marker_spread``). Its best estimate from a set of markers is the posterior mean of ``log s`` under
the family's log-uniform prior and that Gaussian likelihood. :func:`scale_estimate_errors` gives,
frame by frame, the error of that estimate from the markers of the current frame alone and from the
markers of every frame so far: the gap between the two is what a recurrent state can buy.
"""

from __future__ import annotations

import numpy as np

from .config import SynthConfig
from .objects import MARKER_SHAPES
from .render import render_clip
from .scene import build_scene

MIN_PIXELS = 20  # a marker covering fewer pixels is not measurable


def posterior_log_scale(estimates: np.ndarray, spread: float, prior: tuple[float, float]) -> float:
    """Posterior mean of log s given per-marker estimates (K,) with Gaussian errors of std ``spread``,
    under a uniform prior on [log prior[0], log prior[1]] (the prior's mean when K = 0)."""
    lo, hi = np.log(prior[0]), np.log(prior[1])
    grid = np.linspace(lo, hi, 801)  # (G,)
    if len(estimates) == 0 or spread == 0 and hi == lo:
        return float(grid.mean())
    if spread == 0:
        return float(np.clip(np.mean(estimates), lo, hi))
    loglik = -0.5 * ((grid[:, None] - estimates[None, :]) / spread) ** 2  # (G, K)
    w = np.exp(loglik.sum(axis=1) - loglik.sum(axis=1).max())  # (G,)
    return float((w * grid).sum() / w.sum())


def scale_estimate_errors(seed: int, config: SynthConfig) -> dict:
    """Absolute errors of the ideal observer's log-scale estimate per frame: ``"frame"`` (this frame's
    markers), ``"sequence"`` (all markers seen so far), and ``"visible"`` (markers in view per frame)."""
    scene = build_scene(seed, config)
    truth = np.log(scene.scale)
    markers = {i: p for i, p in enumerate(scene.primitives) if p.kind == "marker"}
    # Each marker's own estimate of log s: log(nominal length) - log(length in scene units).
    shape = MARKER_SHAPES[config.marker_shape]
    estimate = {i: np.log(shape.known * config.marker_height) - np.log(shape.measure(p)) for i, p in markers.items()}
    seen: set[int] = set()
    out = {"frame": [], "sequence": [], "visible": []}
    for frame in render_clip(seed, config):
        counts = np.bincount(frame.owner.reshape(-1) + 1, minlength=len(scene.primitives) + 1)[1:]  # (P,)
        visible = [i for i in markers if counts[i] >= MIN_PIXELS]
        seen.update(visible)
        now = posterior_log_scale(np.array([estimate[i] for i in visible]), config.marker_spread, config.world_scale)
        so_far = posterior_log_scale(np.array([estimate[i] for i in sorted(seen)]), config.marker_spread,
                                     config.world_scale)
        out["frame"].append(abs(now - truth))
        out["sequence"].append(abs(so_far - truth))
        out["visible"].append(len(visible))
    return {k: np.array(v) for k, v in out.items()}
