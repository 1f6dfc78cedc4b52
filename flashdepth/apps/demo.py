"""The offline demonstration: a held-out synthetic clip streamed through the bundled
``flashdepth-tiny-synthetic`` model and scored against its exact ground truth.

Nothing is downloaded: the clip is rendered here (:mod:`flashdepth.data.synthetic`) and the
weights ship inside the package. Scores follow the evaluation protocol (one least-squares scale
and shift per sequence in disparity space, :mod:`flashdepth.apps.evaluate`).

The default clip is of the scale-ambiguous family (docs/synthetic.md#scale): its world has a
random scale that only the red-and-white reference markers reveal, and they are in view early in
the clip only. The video's strip below the panels shows the model's own depth scale frame by frame
(no alignment; 1 = metres right) with its state carried and with the state reset at every frame:
what the recurrent state buys.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

DEMO_MODEL = "flashdepth-tiny-synthetic"
#: a seed outside every range the bundled model was trained or validated on (docs/tiny-synthetic.md)
DEMO_SEED = 4242
#: the family of the default clip (a row of flashdepth.data.synthetic.PRESETS)
DEMO_PRESET = "scale-ambiguous"
SKY_RGB = (150, 190, 235)  # how sky (and predicted sky) is drawn in the depth panels
INVALID_RGB = (90, 90, 90)  # pixels with no ground truth
_STRIP = 64  # pixels of the scale strip under the panels


@dataclass(frozen=True)
class DemoResult:
    video: Path  # input | prediction | ground truth, one colour scale, with the scale strip below
    metrics: dict  # every metric of flashdepth.metrics.METRICS, plus "scale" and "shift"
    frames: int
    seconds: float  # wall time of the whole demo (rendering, streaming passes, encoding)
    scales: dict  # "carried" / "reset": the model's own depth scale per frame (predicted / true, median)
    plot: Optional[Path] = None  # scale.png, where matplotlib is installed


def frame_scale(pred: np.ndarray, target: np.ndarray, max_depth: float) -> float:
    """The model's own depth scale in one frame: median of predicted / true depth over valid pixels
    (pred: inverse depth x100 as the model gives it; target: inverse depth in 1/m)."""
    valid = (target >= 1.0 / max_depth) & (pred > 0)
    if not valid.any():
        return float("nan")
    return float(np.median((100.0 / pred[valid]) / (1.0 / target[valid])))


def run_demo(outdir: str | Path, seed: int = DEMO_SEED, frames: int = 48, model: str = DEMO_MODEL,
             preset: str = DEMO_PRESET, device: Optional[str] = None) -> DemoResult:
    """Render clip ``seed`` of family ``preset``, stream it through ``model`` (with its state carried,
    and again reset every frame for the comparison), write ``outdir/demo.mp4`` and score it."""
    from ..data.sequence import DatasetFolder
    from ..data.synthetic import PRESETS, write_synthetic_dataset
    from .evaluate import EvalOptions, eval_size, evaluate_sequence
    from ..geometry import DEFAULT_MAX_DEPTH
    from ..io.colormap import colorize, lut
    from ..io.sinks import OutputOptions, VideoWriter
    from ..inference.preprocess import resize_depth
    from ..inference.session import DepthSession
    from ..inference.weights import load_model

    start = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    config = replace(PRESETS[preset], frames=frames)
    with tempfile.TemporaryDirectory(prefix="flashdepth-demo-") as tmp:
        write_synthetic_dataset(tmp, {"test": [seed]}, config, name="demo")
        seq = DatasetFolder(Path(tmp) / "demo").sequences("test")[0]
        session = DepthSession(load_model(model), device=device)
        metrics = evaluate_sequence(session, seq, EvalOptions())
        size = eval_size(seq.dataset, seq.height, seq.width, session.config.input.eval_preset,
                         session.config.vit.patch_size)

        def stream(carry: bool):
            session.reset(size=size)
            for i in range(len(seq)):
                if not carry:
                    session.reset(size=size)
                rgb = np.asarray(seq.rgb(i))
                yield i, rgb, resize_depth(session.predict(rgb), (seq.height, seq.width)).cpu().numpy()  # (H, W)

        targets = [seq.target(i) for i in range(len(seq))]  # (H, W) 1/m each: 24 small maps
        reset = [frame_scale(pred, targets[i], DEFAULT_MAX_DEPTH) for i, _, pred in stream(False)]
        top = max(float(np.percentile(t, 99)) for t in targets)  # 1/m
        table = lut("Spectral_r")
        width = 3 * seq.width
        writer = VideoWriter(outdir / "demo.mp4", OutputOptions(fps=Fraction(config.fps).limit_denominator(1000),
                                                                time_base=Fraction(1, 1000)), side_by_side=False)
        carried: list[float] = []
        try:
            for i, rgb, pred in stream(True):
                carried.append(frame_scale(pred, targets[i], DEFAULT_MAX_DEPTH))
                aligned = metrics["scale"] * pred + metrics["shift"]  # inverse depth in 1/m
                panels = [rgb, _depth_panel(aligned, pred <= _sky_level(pred), top, table, colorize),
                          _depth_panel(targets[i], targets[i] == 0, top, table, colorize, invalid=targets[i] < 0)]
                image = np.concatenate(panels, axis=1)  # (H, 3W, 3)
                image = np.concatenate([image, _strip(width, carried, reset, len(seq))], axis=0)
                writer.write_image(_label(image, seq.width), round(i * 1000 / config.fps))
        finally:
            writer.close()
    plot = _plot(outdir / "scale.png", carried, reset)
    return DemoResult(outdir / "demo.mp4", metrics, len(seq), time.perf_counter() - start,
                      {"carried": carried, "reset": reset}, plot)


def _sky_level(pred: np.ndarray) -> float:
    """Predicted inverse depth this small is the model's sky (its training target there is 0):
    below 1 % of the frame's 99th percentile, i.e. a hundred times farther than the near scene."""
    return 0.01 * float(np.percentile(pred, 99))


def _depth_panel(inverse: np.ndarray, sky: np.ndarray, top: float, table, colorize,
                 invalid: Optional[np.ndarray] = None) -> np.ndarray:
    rgb = colorize(np.clip(inverse / top, 0.0, 1.0), table)  # (H, W, 3) uint8
    rgb[sky] = SKY_RGB  # drawn as sky, not as the alignment's shift (a mid distance)
    if invalid is not None:
        rgb[invalid] = INVALID_RGB
    return rgb


def _strip(width: int, carried: list[float], reset: list[float], frames: int) -> np.ndarray:
    """The scale strip: log2 of the model's own depth scale per frame, carried (white) and reset
    (orange) up to the current frame, on a grey band; the line at 1 is the truth."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, _STRIP), (30, 30, 30))
    draw = ImageDraw.Draw(strip)
    mid, span = _STRIP // 2, _STRIP / 2 - 4  # +-2 octaves fill the strip

    def y(s: float) -> float:
        return mid - span * float(np.clip(np.log2(s) / 2.0, -1.0, 1.0)) if np.isfinite(s) and s > 0 else mid

    draw.line([(0, mid), (width, mid)], fill=(0, 160, 0))  # the truth: scale 1
    step = width / max(frames - 1, 1)
    for values, colour in ((reset[:len(carried)], (255, 140, 0)), (carried, (255, 255, 255))):
        points = [(k * step, y(s)) for k, s in enumerate(values)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
    draw.text((4, 2), "depth scale (log, 1 = true): state carried", fill=(255, 255, 255))
    draw.text((4, _STRIP - 12), "state reset each frame", fill=(255, 140, 0))
    return np.asarray(strip)


def _label(image: np.ndarray, panel: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    for k, text in enumerate(("input", "prediction (aligned)", "ground truth")):
        draw.rectangle([k * panel, 0, k * panel + 6 * len(text) + 6, 12], fill=(0, 0, 0))
        draw.text((k * panel + 3, 1), text, fill=(255, 255, 255))
    return np.asarray(im)


def _plot(path: Path, carried: list[float], reset: list[float]) -> Optional[Path]:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(carried, label="state carried")
    ax.plot(reset, label="state reset every frame")
    ax.axhline(1.0, color="green", lw=1, label="ground truth")
    ax.set_yscale("log")
    ax.set_xlabel("frame")
    ax.set_ylabel("predicted / true depth (median)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
