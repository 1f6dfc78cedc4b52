"""The paper's evaluation protocol over sequence folders, streaming and in bounded memory.

Per sequence: every frame in order through a fresh stream, resized to the dataset's evaluation
size for the model's preset (``model.config.input.eval_preset``: 'base' for FlashDepth-S/-L and
Depth Anything V2, '2k' for the Full model; sizes in :data:`flashdepth.data.datasets.DATASETS`),
the prediction brought back to the ground truth's size (:func:`flashdepth.preprocess.resize_depth`),
then :class:`flashdepth.metrics.SequenceAccumulator` (one scale and shift per sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .data.datasets import DATASETS
from .data.sequence import SequenceFolder
from .geometry import DEFAULT_MAX_DEPTH
from .metrics import METRICS, SequenceAccumulator, SequenceContext
from .preprocess import processing_size, resize_depth
from .session import DepthSession


def eval_size(dataset: str, height: int, width: int, preset: str, patch: int = 14) -> tuple[int, int]:
    """(H, W) at which a frame of ``dataset`` is processed under ``preset``; datasets without
    presets (and the 'native' preset) use the frame's own size rounded to the patch."""
    sizes = DATASETS[dataset].eval_sizes if dataset in DATASETS else {}
    if preset in sizes:
        return sizes[preset]
    return processing_size(height, width, patch, short_side=0, cap=10**9, explicit=True)


@dataclass(frozen=True)
class EvalOptions:
    preset: Optional[str] = None  # None: the model's own (config.input.eval_preset)
    max_depth: float = DEFAULT_MAX_DEPTH
    per_frame: bool = False
    max_frames: Optional[int] = None
    spill_dir: Optional[str] = None


def evaluate_sequence(session: DepthSession, seq: SequenceFolder, opts: EvalOptions = EvalOptions()) -> dict:
    """Score one sequence -> {"frames", "video", every metric of :data:`METRICS`, "scale", ...}.

    Metrics that do not apply are None (boundary F1 for sparse ground truth, TAE without
    intrinsics and poses); ``video`` False marks image collections, whose temporal numbers are
    computed but mean little.
    """
    if not seq.has_depth:
        raise ValueError(f"{seq.path} has no ground truth to evaluate against")
    n = min(len(seq), opts.max_frames or len(seq))
    preset = opts.preset or session.config.input.eval_preset
    session.reset(size=eval_size(seq.dataset, seq.height, seq.width, preset, session.config.vit.patch_size))
    acc = SequenceAccumulator(max_depth=opts.max_depth, per_frame=opts.per_frame, spill_dir=opts.spill_dir)
    for i in range(n):
        pred = resize_depth(session.predict(seq.rgb(i)), (seq.height, seq.width))  # (H, W) at the GT's size
        acc.add(pred.cpu().numpy(), seq.target(i))
    context = SequenceContext(dense=not seq.depth_spec.sparse, intrinsics=seq.intrinsics(), poses=seq.poses())
    result = acc.finish(seq.target, context)
    return {"frames": n, "video": bool(seq.meta.get("video", True)), **result}


def summarize(records: list[dict]) -> list[dict]:
    """Mean over sequences per (model, dataset) of every metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    out = []
    for (model, dataset), rs in groups.items():
        row = {"model": model, "dataset": dataset, "sequences": len(rs), "frames": sum(r["frames"] for r in rs)}
        for key in METRICS:
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
