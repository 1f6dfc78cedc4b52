"""The paper's evaluation protocol over sequence folders, streaming and in bounded memory.

Per sequence: every frame in order through a fresh stream, resized to the dataset's preset
(``EVAL_PRESETS``; 'base' for FlashDepth-S/-L and Depth Anything V2, '2k' for the Full model),
the prediction upsampled to the ground truth's size (bilinear, align_corners=True), then
:class:`flashdepth.metrics.SequenceAccumulator` (one scale and shift per sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch.nn.functional as F

from .data.sequence import SequenceFolder
from .metrics import SequenceAccumulator, pair_errors
from .preprocess import processing_size
from .session import DepthSession

# (width, height) of the official test presets (datasets spec section 2.11)
EVAL_PRESETS = {
    "eth3d": {"base": (784, 518), "2k": (1918, 1274)},
    "waymo": {"base": (784, 518), "2k": (1918, 1274)},
    "sintel": {"base": (1022, 434), "2k": (1022, 434)},
    "urbansyn": {"base": (1036, 518), "2k": (2044, 1022)},
    "unreal4k": {"base": (924, 518), "2k": (2044, 1148)},
}
PRESETS = ("base", "2k", "native")


def default_preset(model_name: str) -> str:
    return "2k" if model_name == "flashdepth" else "base"


def eval_size(dataset: str, height: int, width: int, preset: str) -> tuple[int, int]:
    """(H, W) at which a frame of ``dataset`` is processed under ``preset``."""
    if preset != "native" and dataset in EVAL_PRESETS:
        w, h = EVAL_PRESETS[dataset][preset]
        return h, w
    return processing_size(height, width, "native", cap=10**9, explicit=True)


@dataclass
class EvalOptions:
    preset: str = "base"
    max_depth: float = 70.0
    per_frame: bool = False
    max_frames: Optional[int] = None
    spill_dir: Optional[str] = None


def evaluate_sequence(session: DepthSession, seq: SequenceFolder, opts: EvalOptions) -> dict:
    """Score one sequence; returns its metrics (boundary F1 None for sparse ground truth, TAE None
    without intrinsics and poses; ``video`` False marks image collections, whose temporal numbers
    are computed but mean little)."""
    if not seq.has_depth:
        raise ValueError(f"{seq.path} has no ground truth to evaluate against")
    n = min(len(seq), opts.max_frames or len(seq))
    session.reset(size=eval_size(seq.dataset, seq.height, seq.width, opts.preset))
    dense = not seq.depth_spec.sparse
    acc = SequenceAccumulator(max_depth=opts.max_depth, per_frame=opts.per_frame, boundary=dense,
                              spill_dir=opts.spill_dir)
    for i in range(n):
        pred = session.predict(seq.rgb(i))  # (h, w) at the preset size
        pred = F.interpolate(pred[None, None], size=(seq.height, seq.width), mode="bilinear", align_corners=True)[0, 0]
        acc.add(pred.cpu().numpy(), seq.target(i))
    tae_hook, tae_value = _tae_hook(seq, opts.max_depth)
    result = acc.finish(seq.target, on_aligned=tae_hook)
    result["tae"] = tae_value()
    result["video"] = bool(seq.meta.get("video", True))
    result["frames"] = n
    return result


def _tae_hook(seq: SequenceFolder, max_depth: float):
    intr, poses = seq.intrinsics(), seq.poses()
    errors: list[float] = []
    if intr is None or poses is None:
        return None, lambda: None
    previous: list = [None]

    def hook(i: int, aligned: np.ndarray) -> None:
        depth = 1.0 / np.clip(aligned, 1e-3, None)
        if previous[0] is not None:
            errors.extend(pair_errors(i - 1, i, previous[0], depth, intr, poses, max_depth))
        previous[0] = depth

    return hook, lambda: (float(np.mean(errors)) if errors else None)


def summarize(records: list[dict]) -> list[dict]:
    """Mean over sequences per (model, dataset)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    out = []
    for (model, dataset), rs in groups.items():
        row = {"model": model, "dataset": dataset, "sequences": len(rs), "frames": sum(r["frames"] for r in rs)}
        for key in ("abs_rel", "delta1", "boundary_f1", "scale_std", "tae"):
            values = [r[key] for r in rs if r.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        out.append(row)
    return out


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
