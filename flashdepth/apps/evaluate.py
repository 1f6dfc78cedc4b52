"""The paper's evaluation protocol over sequence folders, streaming and in bounded memory.

Per sequence: every frame in order through a fresh stream, resized to the dataset's evaluation
size for the model's preset (``model.config.input.eval_preset``: 'base' for FlashDepth-S/-L and
Depth Anything V2, '2k' for the Full model; sizes in :data:`flashdepth.data.datasets.DATASETS`),
the prediction brought back to the ground truth's size (:func:`flashdepth.inference.preprocess.resize_depth`),
then :class:`flashdepth.metrics.SequenceAccumulator` (one scale and shift per sequence).

:func:`evaluate_corpus` is the one loop over a list of sequences (the ``eval`` command and
training validation): it returns a row per sequence and the per-dataset summary, and prints
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..config import EVAL_PRESETS
from ..data.datasets import DATASETS
from ..data.sequence import SequenceFolder
from ..errors import ConfigError, DatasetFormatError, UnknownNameError
from ..geometry import DEFAULT_MAX_DEPTH, DEPTH_SCALE, check_max_depth
from ..metrics import ALIGNMENTS, DEFAULT_ALIGNMENT, METRICS, SequenceAccumulator, SequenceContext
from ..metrics.predictions import PredictionFolder
from ..inference.preprocess import processing_size, resize_depth
from ..inference.session import DepthSession


def eval_size(dataset: str, height: int, width: int, preset: str, patch: int = 14) -> tuple[int, int]:
    """(H, W) at which a frame of ``dataset`` is processed under ``preset``; datasets without
    presets (and the 'native' preset) use the frame's own size rounded to the patch."""
    sizes = DATASETS[dataset].eval_sizes if dataset in DATASETS else {}
    if preset in sizes:
        return sizes[preset]
    return processing_size(height, width, patch, short_side=0, cap=10**9, explicit=True)


@dataclass(frozen=True)
class EvalOptions:
    """How sequences are scored. Invalid values raise :class:`flashdepth.errors.ConfigError`."""

    preset: Optional[str] = None  # None: the model's own (config.input.eval_preset)
    max_depth: float = DEFAULT_MAX_DEPTH  # metres: the fit's far limit and the metrics' clip
    per_frame: bool = False  # fit scale and shift per frame instead of per sequence
    max_frames: Optional[int] = None  # score at most this many frames of each sequence (None: all)
    spill_dir: Optional[str] = None  # where the accumulator spills predictions (None: the system's temp)
    dataset_max_depth: Mapping[str, float] = field(default_factory=dict)  # per-dataset caps over max_depth
    alignment: str = DEFAULT_ALIGNMENT  # a row of flashdepth.metrics.ALIGNMENTS ('none': metres as predicted)

    def __post_init__(self):
        if self.preset is not None and self.preset not in EVAL_PRESETS:
            raise UnknownNameError("evaluation preset", self.preset, EVAL_PRESETS)
        if self.alignment not in ALIGNMENTS:
            raise UnknownNameError("alignment", self.alignment, ALIGNMENTS)
        check_max_depth(self.max_depth)
        for dataset, cap in self.dataset_max_depth.items():
            check_max_depth(cap, f"dataset_max_depth[{dataset!r}]")
        if self.max_frames is not None and (isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int)
                                            or self.max_frames < 1):
            raise ConfigError(f"max_frames={self.max_frames!r} must be a number of frames, 1 or more "
                              "(None scores every frame)")

    def max_depth_for(self, dataset: str) -> float:
        """The depth cap of a dataset: its entry in ``dataset_max_depth``, else ``max_depth``."""
        return float(self.dataset_max_depth.get(dataset, self.max_depth))


def check_sequence(seq: SequenceFolder) -> None:
    """Raise :class:`flashdepth.errors.DatasetFormatError`, naming the sequence, if it cannot be
    scored (no ground truth, no frames)."""
    if not seq.has_depth:
        raise DatasetFormatError(f"sequence {seq.dataset}/{seq.name} ({seq.path}) has no ground truth to evaluate "
                                 "against; leave it out of the split")
    if len(seq) < 1:
        raise DatasetFormatError(f"sequence {seq.dataset}/{seq.name} ({seq.path}) has no frames (num_frames "
                                 f"{len(seq)} in sequence.json); convert it again or leave it out of the split")


def _score(seq: SequenceFolder, predictions: Iterable[np.ndarray], n: int, opts: EvalOptions,
           preset: Optional[str]) -> dict:
    """Feed ``n`` predictions (inverse depth at the ground truth's size; in 1/m for an alignment
    that compares metres) to the accumulator -> the row's scores and the protocol they follow."""
    cap = opts.max_depth_for(seq.dataset)
    acc = SequenceAccumulator(max_depth=cap, per_frame=opts.per_frame, spill_dir=opts.spill_dir,
                              alignment=opts.alignment)
    for i, pred in zip(range(n), predictions):
        acc.add(pred, seq.target(i))
    context = SequenceContext(dense=not seq.depth_spec.sparse, intrinsics=seq.intrinsics(), poses=seq.poses())
    result = acc.finish(seq.target, context)
    protocol = {"alignment": opts.alignment, "per_frame_align": opts.per_frame, "max_depth": cap, "preset": preset}
    return {"frames": n, "video": bool(seq.meta.get("video", True)), **result, **protocol}


def evaluate_sequence(session: DepthSession, seq: SequenceFolder, opts: EvalOptions = EvalOptions()) -> dict:
    """Score one sequence -> {"frames", "video", every metric of :data:`METRICS`, "scale", "shift",
    "valid_pixels", and the protocol: "alignment", "per_frame_align", "max_depth", "preset"}.

    Metrics that do not apply are None (boundary F1 for sparse ground truth, TAE without
    intrinsics and poses), and so is every metric when no pixel is valid under the depth cap;
    ``video`` False marks image collections, whose temporal numbers are computed but mean little.
    """
    check_sequence(seq)
    n = min(len(seq), opts.max_frames or len(seq))
    preset = opts.preset or session.config.input.eval_preset
    session.reset(size=eval_size(seq.dataset, seq.height, seq.width, preset, session.config.vit.patch_size))
    # The published relative models predict inverse depth x DEPTH_SCALE: an alignment that compares
    # metres as predicted needs 1/m (the others fit the scale, so they take the output as it is).
    # A metric model (its row's unit) predicts depth in metres: inverted to 1/m (below 1 mm read as 1 mm).
    metric = session.config.unit.metric and not session.config.unit.inverse
    unit = DEPTH_SCALE if ALIGNMENTS[opts.alignment].in_metres else 1.0

    def prediction(i: int) -> np.ndarray:  # (H, W) at the ground truth's size
        out = resize_depth(session.predict(seq.rgb(i)), (seq.height, seq.width)).cpu().numpy()
        return 1.0 / np.maximum(out, 1e-3) if metric else out / unit

    predictions = (prediction(i) for i in range(n))
    return _score(seq, predictions, n, opts, preset)


@dataclass(frozen=True)
class CorpusResult:
    """What :func:`evaluate_corpus` returns."""

    rows: list  # one dict per sequence: model, dataset, sequence, then evaluate_sequence's keys
    summary: list  # summarize(rows): one dict per (model, dataset), mean over sequences


def _corpus(name: str, sequences: list, score: Callable[[SequenceFolder], dict],
            on_row: Optional[Callable[[dict], None]]) -> CorpusResult:
    rows = []
    for seq in sequences:
        row = {"model": name, "dataset": seq.dataset, "sequence": seq.name, **score(seq)}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return CorpusResult(rows, summarize(rows))


def evaluate_corpus(model, sequences: Sequence[SequenceFolder], opts: EvalOptions = EvalOptions(),
                    device: Optional[str] = None, precision: Optional[str] = None, name: Optional[str] = None,
                    on_row: Optional[Callable[[dict], None]] = None) -> CorpusResult:
    """Score a model over sequences with the paper's protocol; prints nothing.

    ``model``: a :class:`flashdepth.FlashDepth` (or anything :class:`DepthSession` runs), run on
    ``device`` in ``precision``, or a ready :class:`DepthSession` (then ``device`` and
    ``precision`` are its own). Every sequence is checked (:func:`check_sequence`) before the
    first is scored. ``name`` labels the rows (default: the model's config name); ``on_row`` is
    called with each row as soon as it is scored (progress). A module that was in training mode
    is put back in training mode afterwards.
    """
    sequences = list(sequences)
    for seq in sequences:
        check_sequence(seq)
    training = getattr(model, "training", None)
    session = model if isinstance(model, DepthSession) else DepthSession(model, device=device, precision=precision)
    try:
        return _corpus(name or session.config.name, sequences, lambda seq: evaluate_sequence(session, seq, opts), on_row)
    finally:
        if training:
            model.train()


# ------------------------------------------------------------------ predictions of any method
def evaluate_predictions(predictions: PredictionFolder, sequences: Sequence[SequenceFolder],
                         opts: EvalOptions = EvalOptions(), name: Optional[str] = None,
                         on_row: Optional[Callable[[dict], None]] = None) -> CorpusResult:
    """Score the saved predictions of any method with the same protocol and metrics as
    :func:`evaluate_corpus` (the predictions are at the ground truth's size, so ``opts.preset``
    does not apply). Every sequence and its predictions' frame count and size are checked before
    the first is scored; values (NaN, ...) when each frame is read."""
    sequences = list(sequences)
    if opts.preset is not None:
        raise ConfigError(f"preset={opts.preset!r} does not apply to saved predictions (they are scored at the "
                          "ground truth's size); leave preset=None")
    frames = {}
    for seq in sequences:
        check_sequence(seq)
        frames[seq.path] = predictions.open(seq)

    def score(seq: SequenceFolder) -> dict:
        n = min(len(seq), opts.max_frames or len(seq))
        return _score(seq, (frames[seq.path](i) for i in range(n)), n, opts, None)

    return _corpus(name or predictions.root.name, sequences, score, on_row)


def summarize(records: list[dict]) -> list[dict]:
    """Mean over sequences per (model, dataset) of every metric (sequences where a metric is
    missing are left out of its mean; None when it is missing everywhere)."""
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
