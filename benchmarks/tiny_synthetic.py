"""flashdepth-tiny-synthetic end to end: data, the two training steps, and the evidence.

One command reproduces the bundled demonstration model and every figure of
docs/tiny-synthetic.md (about 2.5 hours on a 2-core CPU; every stage skips what is done and the
training resumes from its last checkpoint, so it may be run in parts):

    python benchmarks/tiny_synthetic.py all --workdir tiny/ --json tiny/evidence.json

Stages:

* ``synth``: the varied world and the scale-ambiguous family (``flashdepth synth --preset``), each
  with train / val / held-out test seeds;
* ``train``: the single-image model (configs/tiny-synthetic-image.toml), then FlashDepth started
  from it with the temporal module at zero (configs/tiny-synthetic.toml), the paper's stage 1;
* ``eval``: on the held-out clips of both families, the trained model with its state carried, the
  same weights with the state reset every frame, and the single-image model: AbsRel and delta1
  with one scale and shift per sequence and with no alignment at all, scale_std, TAE, and the
  error against the frame index (plotted with ``--plot``); and the yard scene (a ground, a back
  wall and boxes at 3, 6 and 12 m) for the ordering of the boxes;
* ``cue``: whether the single-image model's scale follows the scale family's markers;
* ``fit``: whether the single-image model fits its own training clips (per-frame-aligned delta1 on
  train and held-out clips, against a prior map that ignores the frame, and an 8-frame overfit);
* ``memory`` (and ``memory-eval``): the toy memory task of docs/tiny-synthetic.md#memory, the
  ``scale-memory`` family trained from the former bundled recipe's single-image model
  (configs/tiny-patch-image.toml, then configs/tiny-memory-image.toml and configs/tiny-memory.toml)
  and evaluated carried vs reset vs single-image, with the ideal observer and the state's influence.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SYNTH = [
    ["varied", "varied", ["train=0:240", "val=5000:5004", "test=1000:1016"]],
    ["scale", "scale-ambiguous", ["train=20000:20240", "val=25000:25004", "test=21000:21016"]],
]
STEPS = {"image": "configs/tiny-synthetic-image.toml", "temporal": "configs/tiny-synthetic.toml"}
MAX_DEPTH = 70.0
# The toy memory task (docs/tiny-synthetic.md#memory): its family and seeds (12-frame clips at
# 126x224, the preset's), and its two training steps: a single-image model that learns to read the
# markers (from the former bundled recipe's single-image step, the patch stem trained with L1 on the
# same data as STEPS["image"]: MEMORY_STEPS["patch-image"]), then FlashDepth from it.
MEMORY_SPLITS = ["train=30000:30200", "val=35000:35004", "test=31000:31016"]
# family -> (data folder, preset, its single-image step, the FlashDepth step trained from that).
MEMORY_FAMILIES = {"memory": ("memory", "scale-memory", "memory-image", "memory"),
                   "memory-coded": ("memory-coded", "scale-memory-coded", "memory-image", "memory-coded"),
                   "memory-tiles": ("memory-tiles", "scale-memory-tiles", "memory-tiles-image", "memory-tiles"),
                   # the same clips, models with the convolutional ViT stem (vit.stem = "conv")
                   "memory-tiles-conv": ("memory-tiles", "scale-memory-tiles", "memory-tiles-conv-image",
                                         "memory-tiles-conv")}
# In training order: each step's config names the checkpoint it starts from (its ``init``).
MEMORY_STEPS = {"patch-image": "configs/tiny-patch-image.toml",
                "memory-image": "configs/tiny-memory-image.toml", "memory": "configs/tiny-memory.toml",
                "memory-coded": "configs/tiny-memory-coded.toml",
                "memory-tiles-image": "configs/tiny-memory-tiles-image.toml",
                "memory-tiles": "configs/tiny-memory-tiles.toml",
                "memory-tiles-conv-image": "configs/tiny-memory-tiles-conv-image.toml",
                "memory-tiles-conv": "configs/tiny-memory-tiles-conv.toml"}
RECIPES = {**STEPS, **MEMORY_STEPS}


def synth(work: Path, families=SYNTH) -> None:
    """Render each (data folder, preset, splits) of ``families`` under work/data, skipping folders
    already written."""
    for name, preset, splits in families:
        if (work / "data" / name / "dataset.json").is_file():
            continue
        args = ["data", "--name", name, "--preset", preset]
        for split in splits:
            args += ["--split", split]
        subprocess.run([sys.executable, "-m", "flashdepth_cli", "synth", *args], cwd=work, check=True)


def last_checkpoint(work: Path, step: str) -> Path | None:
    from flashdepth.train import load_train_config

    found = sorted((work / load_train_config(REPO / RECIPES[step]).out_dir).glob("step_*.pth"))
    return found[-1] if found else None


def train(work: Path, threads: int, steps: dict[str, str] = STEPS, init_from: dict[str, str] | None = None) -> None:
    """Train each step of ``steps`` (name -> recipe) in order, skipping finished ones and resuming
    from a step's last checkpoint; a step named in ``init_from`` starts from the named step's last
    checkpoint (default: the bundled recipe's temporal step from its single-image step), the others
    from their config's ``init``."""
    from flashdepth.train import load_train_config

    init_from = {"temporal": "image"} if init_from is None else init_from
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for step, recipe in steps.items():
        config = load_train_config(REPO / recipe)
        final = work / config.out_dir / f"step_{config.steps:07d}.pth"
        if final.is_file():
            continue
        extra = []
        last = last_checkpoint(work, step)
        if last is not None:
            extra = ["--resume", str(last)]
        elif step in init_from:
            extra = [f"init={last_checkpoint(work, init_from[step])}"]
        with open(work / f"train_{step}.log", "a") as log:
            subprocess.run([sys.executable, "-m", "flashdepth_cli", "train", str(REPO / recipe), *extra],
                           cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


# ------------------------------------------------------------------------------ evidence
def predict_sequence(model, seq, carry: bool) -> np.ndarray:
    """(T, H, W) inverse depth (the model's units, 100/m) of every frame, streamed."""
    import torch

    from flashdepth.inference.preprocess import normalise, to_float_rgb

    state, out = None, []
    with torch.no_grad():
        for i in range(len(seq)):
            rgb = to_float_rgb(torch.from_numpy(np.array(seq.rgb(i))))  # (3, H, W) in [0, 1]
            depth, new_state = model(normalise(rgb, (seq.height, seq.width), model.config.input), state)
            state = new_state if carry else None
            out.append(depth[0].numpy())
    return np.stack(out)


def unaligned(pred: np.ndarray, gt: np.ndarray) -> dict:
    """AbsRel and delta1 in metres with no alignment (the model's own scale), per frame and overall.
    pred in 100/m, gt in 1/m (-1 invalid, 0 sky)."""
    valid = gt >= 1.0 / MAX_DEPTH  # (T, H, W)
    depth_true = np.where(valid, 1.0 / np.where(valid, gt, 1.0), np.nan)
    depth_pred = np.clip(100.0 / np.clip(pred, 1e-6, None), 1e-3, MAX_DEPTH)  # capped as the protocol caps depth
    rel = np.abs(depth_pred - depth_true) / depth_true  # NaN off the mask
    ratio = np.maximum(depth_pred / depth_true, depth_true / depth_pred)
    per_frame = np.nanmean(rel.reshape(len(gt), -1), axis=1)
    # The frame's scale error: log of the median ratio of predicted to true depth.
    log_scale = np.array([np.nanmedian(np.log(p[v] / t[v])) for p, t, v in zip(depth_pred, depth_true, valid)])
    return {"abs_rel": float(np.nanmean(rel)), "delta1": float(np.nanmean(ratio[valid] < 1.25)),
            "abs_rel_per_frame": per_frame.tolist(), "log_scale_error_per_frame": np.abs(log_scale).tolist(),
            "log_scale_per_frame": log_scale.tolist()}


def score(pred: np.ndarray, seq) -> dict:
    from flashdepth.metrics import depth_metrics, scale_std, tae

    gt = np.stack([seq.target(i) for i in range(len(seq))])  # (T, H, W) 1/m
    aligned = depth_metrics(pred, gt, max_depth=MAX_DEPTH)
    s, t = aligned["scale"], aligned["shift"]
    fitted = s * pred + t  # (T, H, W) aligned inverse depth, 1/m
    valid = gt >= 1.0 / MAX_DEPTH
    depth_true = np.where(valid, 1.0 / np.where(valid, gt, 1.0), np.nan)
    depth_fit = 1.0 / np.clip(fitted, 1.0 / MAX_DEPTH, None)
    per_frame = np.nanmean((np.abs(depth_fit - depth_true) / depth_true).reshape(len(gt), -1), axis=1)
    aligned_depth = np.where(fitted > 0, 1.0 / np.clip(fitted, 1e-6, None), 0.0)
    out = {"abs_rel": aligned["abs_rel"], "delta1": aligned["delta1"], "abs_rel_per_frame": per_frame.tolist(),
           "scale_std": scale_std(pred, gt, MAX_DEPTH),
           "tae": tae(aligned_depth, np.tile(seq.intrinsics(), (len(gt), 1)) if seq.intrinsics().ndim == 1
                      else seq.intrinsics(), seq.poses(), MAX_DEPTH)}
    return {"aligned": out, "unaligned": unaligned(pred, gt)}


def oracle() -> dict:
    """The ideal observer on the scale family's held-out seeds: |log scale error| per frame from the
    current frame's markers alone and from every frame so far (flashdepth.data.synthetic.oracle)."""
    from flashdepth.data.synthetic import PRESETS
    from flashdepth.data.synthetic.oracle import scale_estimate_errors

    runs = [scale_estimate_errors(seed, PRESETS["scale-ambiguous"]) for seed in range(21000, 21016)]
    return {key: np.mean([r[key] for r in runs], axis=0).tolist() for key in ("frame", "sequence", "visible")}


def yard_frames(height: int = 240, width: int = 320, frames: int = 24):
    """A scene of the kind users try first, built by hand rather than drawn from a preset: a textured
    ground, a back wall 20 m away, and three textured boxes 3, 6 and 12 m ahead, seen by a camera at
    1.5 m moving slowly sideways. Yields (rgb, depth, owner) with owner 1, 2, 3 on the boxes."""
    from flashdepth.data.synthetic import Box, Ground, Scene, Texture, camera_intrinsics, look_rotation, render_frame

    def tex(kind, a, b, scale, key):
        return Texture(kind=kind, colors=np.array([a, b, [0.5, 0.4, 0.3], [0.3, 0.5, 0.4]]), scale=scale, key=key)

    boxes = [Box(center=np.array([d, x, 0.5]), half=np.array([0.5, 0.5, 0.5]),
                 texture=tex("checker", [0.2, 0.3, 0.7], [0.85, 0.8, 0.4], 0.25, k))
             for k, (d, x) in enumerate(((3.0, -0.9), (6.0, 0.4), (12.0, 1.6)))]
    wall = Box(kind="wall", center=np.array([20.0, 0.0, 3.0]), half=np.array([0.2, 30.0, 3.0]),
               texture=tex("bricks", [0.6, 0.35, 0.25], [0.8, 0.8, 0.75], 0.3, 7))
    ground = Ground(texture=tex("fractal", [0.35, 0.3, 0.2], [0.6, 0.55, 0.4], 0.8, 9))
    scene = Scene(primitives=(ground, *boxes, wall))
    k = camera_intrinsics(height, width, 60.0)
    for i in range(frames):
        pose = np.eye(4)
        pose[:3, :3] = look_rotation(0.0, np.radians(-8.0), 0.0)
        pose[:3, 3] = [0.0, -0.3 + 0.6 * i / max(frames - 1, 1), 1.5]  # 0.6 m to the side in total
        frame = render_frame(scene, pose, k, height, width)
        yield frame.rgb, frame.depth, frame.owner


def yard(model) -> dict:
    """delta1 and AbsRel after one scale and shift for the clip, and the boxes' mean predicted
    inverse depth (they must come out ordered: nearest highest)."""
    import torch

    from flashdepth.metrics import depth_metrics
    from flashdepth.inference.session import DepthSession

    session = DepthSession(model, device="cpu")
    preds, gts, boxes = [], [], []
    with torch.no_grad():
        for rgb, depth, owner in yard_frames():
            pred = session.step(rgb)  # (H, W) at the frame's size
            gt = np.where(np.isfinite(depth), 1.0 / depth, 0.0).astype(np.float32)
            preds.append(pred)
            gts.append(gt)
            boxes.append([float(pred[owner == k].mean()) for k in (1, 2, 3)])
    m = depth_metrics(np.stack(preds), np.stack(gts), max_depth=MAX_DEPTH)
    b = np.mean(boxes, axis=0)
    return {"abs_rel": m["abs_rel"], "delta1": m["delta1"], "boxes_3_6_12m": b.tolist(),
            "ordered": bool(b[0] > b[1] > b[2])}


def evaluate(work: Path) -> dict:
    from flashdepth import load_model
    from flashdepth.data.sequence import DatasetFolder

    temporal = load_model(last_checkpoint(work, "temporal"))
    image = load_model(last_checkpoint(work, "image"))
    runs = {"state carried": (temporal, True), "state reset every frame": (temporal, False),
            "single-image model": (image, True)}
    results: dict = {"yard": {label: yard(m) for label, (m, _) in
                              (("state carried", runs["state carried"]), ("single-image model", runs["single-image model"]))}}
    print(json.dumps(results["yard"]), flush=True)
    for family, _, _ in SYNTH:
        sequences = DatasetFolder(work / "data" / family).sequences("test")
        for label, (model, carry) in runs.items():
            scores = [score(predict_sequence(model, seq, carry), seq) for seq in sequences]
            results.setdefault(family, {})[label] = _mean(scores)
            row = results[family][label]
            print(json.dumps({"family": family, "run": label,
                              **{f"{k}_{m}": row[k][m] for k in ("aligned", "unaligned") for m in ("abs_rel", "delta1")},
                              "scale_std": row["aligned"]["scale_std"], "tae": row["aligned"]["tae"]}), flush=True)
    return results


def _mean(scores: list[dict]) -> dict:
    out: dict = {}
    for part in scores[0]:
        out[part] = {}
        for key in scores[0][part]:
            values = [s[part][key] for s in scores if s[part][key] is not None]
            out[part][key] = np.mean(np.array(values, dtype=np.float64), axis=0).tolist() if values else None
    return out


def table(results: dict) -> str:
    lines = ["| test clips | run | AbsRel (seq. aligned) | delta1 (seq. aligned) | AbsRel (no alignment) | "
             "delta1 (no alignment) | scale_std | TAE |", "|---|---|---|---|---|---|---|---|"]
    for family, runs in results.items():
        if family in ("oracle", "yard"):
            continue
        for label, r in runs.items():
            a, u = r["aligned"], r["unaligned"]
            lines.append(f"| {family} | {label} | {a['abs_rel']:.4f} | {a['delta1']:.4f} | {u['abs_rel']:.4f} | "
                         f"{u['delta1']:.4f} | {a['scale_std']:.4f} | {a['tae']:.4f} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in results if f not in ("oracle", "yard")]
    fig, axes = plt.subplots(2, len(families), figsize=(5.5 * len(families), 7), squeeze=False)
    for col, family in enumerate(families):
        for label, r in results[family].items():
            axes[0, col].plot(r["unaligned"]["log_scale_error_per_frame"], label=label)
            axes[1, col].plot(r["aligned"]["abs_rel_per_frame"], label=label)
        if family == "scale" and "oracle" in results:
            axes[0, col].plot(results["oracle"]["frame"], "k:", label="ideal observer, this frame's markers")
            axes[0, col].plot(results["oracle"]["sequence"], "k--", label="ideal observer, all frames so far")
        axes[0, col].set_title(f"{family}: |log scale error| per frame (no alignment)")
        axes[1, col].set_title(f"{family}: AbsRel per frame (one fit per sequence)")
        for ax in axes[:, col]:
            ax.set_xlabel("frame index")
            ax.grid(alpha=0.3)
        axes[0, col].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


# ------------------------------------------------------------------ the toy memory task
FIT_FRAMES = (0, 6, 12, 18)  # the frames of each clip the fit stage scores, one alignment each


def frame_delta1(pred: np.ndarray, gt: np.ndarray) -> float:
    """pred, gt: (T, H, W) -> mean over frames of delta1 after each frame's own scale and shift:
    how well the structure is predicted, with every frame's scale forgiven."""
    from flashdepth.metrics import depth_metrics

    return float(np.mean([depth_metrics(p[None], g[None], max_depth=MAX_DEPTH)["delta1"] for p, g in zip(pred, gt)]))


def overfit(config, seqs, steps: int = 300, lr: float = 1e-3, seed: int = 0) -> list[list[float]]:
    """A fresh model of ``config`` trained on one fixed batch (frame 6 of each of ``seqs``) with the
    recipe's L1: [step, per-frame delta1 on that batch] every 100 steps. A model that can fit what
    it is shown this way has the capacity; a recipe that then scores at the prior's level lacks
    something else (data per step, steps, or the loss)."""
    import torch

    from flashdepth import FlashDepth
    from flashdepth.inference.preprocess import normalise, to_float_rgb
    from flashdepth.train import DepthLoss

    torch.manual_seed(seed)
    model = FlashDepth(config)
    x = torch.cat([normalise(to_float_rgb(torch.from_numpy(np.array(s.rgb(6)))), (s.height, s.width), config.input)
                   for s in seqs])  # (N, 3, H, W)
    gt = np.stack([s.target(6) for s in seqs])  # (N, H, W) 1/m, -1 invalid, 0 sky
    target = torch.from_numpy(gt).float()[:, None]  # (N, 1, H, W): N one-frame clips
    criterion = DepthLoss(model, "l1")
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    curve = []
    for step in range(1, steps + 1):
        loss = criterion(x[:, None], target)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step % 100 == 0:
            with torch.no_grad():
                pred, _ = model(x, None)
            curve.append([step, frame_delta1(pred.numpy(), gt)])
    return curve


def fit(work: Path, checkpoints: dict[str, Path], clips: int = 16) -> dict:
    """Does the single-image model fit its own training clips? Per-frame-aligned delta1 (frames
    FIT_FRAMES) on the first ``clips`` train and held-out clips of both families, for each checkpoint
    and for the prior map: the mean training inverse depth of every pixel (clips 16-95, frames 0 and
    12), one picture for every frame, which knows the renderer's layout and nothing of the frame.
    Then ``overfit`` on 8 training frames, the capacity check."""
    from flashdepth import load_model
    from flashdepth.data.sequence import DatasetFolder

    models = {label: load_model(path) for label, path in checkpoints.items()}
    results: dict = {"checkpoints": {label: str(path) for label, path in checkpoints.items()}}
    for family, _, _ in SYNTH:
        folder = DatasetFolder(work / "data" / family)
        train_seqs = folder.sequences("train")
        prior = np.mean([np.clip(s.target(i), 0, None) for s in train_seqs[16:96] for i in (0, 12)], axis=0)  # (H, W)
        for split in ("train", "test"):
            seqs = folder.sequences(split)[:clips]
            gts = [np.stack([s.target(i) for i in FIT_FRAMES]) for s in seqs]  # (F, H, W) each
            row = {"prior map": float(np.mean([frame_delta1(np.repeat(prior[None], len(g), 0), g) for g in gts]))}
            for label, model in models.items():
                row[label] = float(np.mean([frame_delta1(predict_sequence(model, s, True)[list(FIT_FRAMES)], g)
                                            for s, g in zip(seqs, gts)]))
            results.setdefault(family, {})[split] = row
            print(json.dumps({"family": family, "split": split, **row}), flush=True)
    config = next(iter(models.values())).config
    results["overfit"] = overfit(config, DatasetFolder(work / "data" / "varied").sequences("train")[:8])
    print(json.dumps({"overfit": results["overfit"]}), flush=True)
    return results


def memory_synth(work: Path) -> None:
    synth(work, [(name, preset, MEMORY_SPLITS) for name, preset, _, _ in MEMORY_FAMILIES.values()])


def memory_train(work: Path, threads: int) -> None:
    """The memory steps, each resumed from its last checkpoint if there is one; the first (the
    former bundled single-image step) trains from scratch on the varied and scale-ambiguous worlds,
    rendered here if they are not yet, each other from the last checkpoint its config's ``init``
    names, made by a step before it in MEMORY_STEPS."""
    synth(work)
    train(work, threads, MEMORY_STEPS, init_from={})


def memory_evaluate(work: Path, checkpoint: Path | None = None, family: str = "memory") -> dict:
    """Carried vs reset vs the single-image model on the toy's held-out clips, the ideal observer on
    the same seeds, and the state's influence: the relative L2 difference between the carried and
    the reset prediction, per frame."""
    import torch

    from flashdepth import load_model
    from flashdepth.data.sequence import DatasetFolder
    from flashdepth.data.synthetic import PRESETS
    from flashdepth.data.synthetic.oracle import scale_estimate_errors

    folder, preset, image_step, step = MEMORY_FAMILIES[family]
    temporal = load_model(checkpoint or last_checkpoint(work, step))
    image = load_model(last_checkpoint(work, image_step))
    sequences = DatasetFolder(work / "data" / folder).sequences("test")
    runs = {"state carried": (temporal, True), "state reset every frame": (temporal, False),
            "single-image model": (image, True)}
    preds = {label: [predict_sequence(m, seq, carry) for seq in sequences] for label, (m, carry) in runs.items()}
    results: dict = {"memory": {label: _mean([score(p, seq) for p, seq in zip(preds[label], sequences)])
                                for label in runs}}
    influence = [np.linalg.norm((a - b).reshape(len(a), -1), axis=1) / np.linalg.norm(b.reshape(len(b), -1), axis=1)
                 for a, b in zip(preds["state carried"], preds["state reset every frame"])]  # (T,) each
    results["influence_per_frame"] = np.mean(influence, axis=0).tolist()
    out_layer = temporal.mamba.final_layer[1].weight.detach()
    results["temporal_output_weight_norm"] = float(torch.linalg.norm(out_layer))
    observer = [scale_estimate_errors(int(seq.name), PRESETS[preset]) for seq in sequences]
    results["oracle"] = {key: np.mean([r[key] for r in observer], axis=0).tolist()
                         for key in ("frame", "sequence", "visible")}
    results["checkpoint"] = str(checkpoint or last_checkpoint(work, step))
    results["family"] = family
    return results


# family -> (data folder, preset, the single-image step whose model is asked)
# the scale family is read by the former bundled step 1 (patch stem, L1), the model the cue
# experiment of docs/tiny-synthetic.md#memory measured; the bundled step 1 now has no unit
CUES = {"scale": ("scale", "scale-ambiguous", "patch-image"),
        **{family: row[:3] for family, row in MEMORY_FAMILIES.items()}}


def cue(work: Path, family: str = "scale", checkpoint: Path | None = None) -> dict:
    """Does the single-image model read the markers of the family? Per test frame: its log scale
    (median log of predicted / true depth, plus the true log scale) against the true log scale, on
    frames with a measurable marker and frames without; and the markers' image size."""
    from flashdepth import load_model
    from flashdepth.data.sequence import DatasetFolder
    from flashdepth.data.synthetic import PRESETS, build_scene, render_clip
    from flashdepth.data.synthetic.oracle import MIN_PIXELS

    folder, preset, step = CUES[family]
    config = PRESETS[preset]
    model = load_model(checkpoint or last_checkpoint(work, step))
    truth, predicted, seen, rows, area = [], [], [], [], []
    for seq in DatasetFolder(work / "data" / folder).sequences("test"):
        scene = build_scene(int(seq.name), config)
        markers = [i for i, p in enumerate(scene.primitives) if p.kind == "marker"]
        pred = predict_sequence(model, seq, True)  # (T, H, W) 100/m
        for i, frame in enumerate(render_clip(int(seq.name), config)):
            valid = np.isfinite(frame.depth) & (frame.depth < MAX_DEPTH)
            depth = np.clip(100.0 / np.clip(pred[i][valid], 1e-6, None), 1e-3, MAX_DEPTH)  # capped as `unaligned`
            error = np.median(np.log(depth) - np.log(frame.depth[valid]))
            truth.append(np.log(scene.scale))
            predicted.append(np.log(scene.scale) + error)
            areas = [int((frame.owner == k).sum()) for k in markers]
            seen.append(max(areas, default=0) >= MIN_PIXELS)
            if seen[-1]:
                rows.append(max(int((frame.owner == k).any(axis=1).sum()) for k in markers))
                area.append((np.log(scene.scale), np.log(np.mean([a for a in areas if a >= MIN_PIXELS]))))
    truth, predicted, seen = map(np.array, (truth, predicted, seen))
    out = {}
    for label, mask in (("marker in view", seen), ("no marker", ~seen)):
        out[label] = {"frames": int(mask.sum()), "corr": float(np.corrcoef(truth[mask], predicted[mask])[0, 1]),
                      "slope": float(np.polyfit(truth[mask], predicted[mask], 1)[0]),
                      "mean_abs_log_scale_error": float(np.abs(predicted[mask] - truth[mask]).mean())}
    out["marker_rows_p10_p50_p90"] = np.percentile(rows, [10, 50, 90]).tolist()
    # How clean the cue is in the images themselves: the markers' mean visible area (log) against the
    # true log scale, over the frames that show one (-1: area alone would read the scale exactly).
    out["marker_area_vs_scale_corr"] = float(np.corrcoef(np.array(area).T)[0, 1])
    out["probe"] = probe(work, model, folder, config)
    return out


def cue_frames(work: Path, folder: str, config, split: str, frames: int, input_config=None, count: int | None = None):
    """The first ``frames`` frames (the cue in view) of the first ``count`` clips of a split, as
    (N, 3, H, W) RGB in [0, 1], or normalised for a model of ``input_config``, and (N,) float64 the
    true log scale of each frame's world."""
    import torch

    from flashdepth.data.sequence import DatasetFolder
    from flashdepth.data.synthetic import build_scene
    from flashdepth.inference.preprocess import normalise, to_float_rgb

    x, y = [], []
    for seq in DatasetFolder(work / "data" / folder).sequences(split)[:count]:
        scale = np.log(build_scene(int(seq.name), config).scale)
        for i in range(frames):
            rgb = to_float_rgb(torch.from_numpy(np.array(seq.rgb(i))))  # (3, H, W)
            x.append(normalise(rgb, (seq.height, seq.width), input_config)[0] if input_config else rgb)
            y.append(scale)
    return torch.stack(x), np.array(y)  # (N, 3, H, W), (N,)


def probe(work: Path, model, folder: str, config) -> dict:
    """Is the scale in the frame model's ViT features at all? A ridge regression from each layer's
    mean and max token to the true log scale, fitted on the first two frames (markers in view) of 120
    training clips and scored on the test clips' first two frames."""
    import torch

    def features(split: str, count: int):
        inputs, y = cue_frames(work, folder, config, split, 2, model.config.input, count)
        with torch.no_grad():  # one frame at a time: (1, 3, H, W) -> 4 x (1, N, D)
            x = [torch.cat([torch.cat([t[0].mean(0), t[0].amax(0)]) for t in model.pretrained.intermediate_layers(
                frame[None])]).numpy() for frame in inputs]  # (8 D,) each
        return np.array(x), y

    x_train, y_train = features("train", 120)
    x_test, y_test = features("test", None)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mean) / std, (x_test - mean) / std
    w = np.linalg.solve(a.T @ a + 1000.0 * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean()))
    guess = b @ w + y_train.mean()
    return {"test_corr": float(np.corrcoef(guess, y_test)[0, 1]), "test_mean_abs_error": float(np.abs(guess - y_test).mean()),
            "prior_mean_abs_error": float(np.abs(y_test - y_train.mean()).mean())}


def learnable(work: Path, family: str, learner: str, steps: int, lr: float, checkpoint: Path | None = None) -> dict:
    """Is the family's cue learnable from its frames by direct supervision, and by which network?
    Regress the true log scale of frames 0-2 (the cue in view) of the 200 training clips with
    squared error, batches of 16, AdamW at ``lr``, and score the 16 held-out clips' frames 0-2:
    ``learner`` "cnn" is a 4-layer convolutional net from scratch; "vit" is the family's single-image
    model's own ViT (its step 1's start, fresh when that step starts from scratch, or ``checkpoint``)
    with a linear head on its last layer's mean and max token, all trained."""
    import torch
    import torch.nn as nn

    from flashdepth import FlashDepth, load_model
    from flashdepth.data.synthetic import PRESETS
    from flashdepth.train import load_train_config

    torch.manual_seed(0)
    folder, preset, image_step, _ = MEMORY_FAMILIES[family]
    recipe = load_train_config(REPO / RECIPES[image_step])
    start = checkpoint or (work / recipe.init if recipe.init else None)
    model = None
    if learner == "vit":
        model = load_model(start) if start else FlashDepth(recipe.model_to_train())

    input_config = model.config.input if model else None
    x_train, y_train = cue_frames(work, folder, PRESETS[preset], "train", 3, input_config)
    x_test, y_test = cue_frames(work, folder, PRESETS[preset], "test", 3, input_config)
    y_train, y_test = torch.tensor(y_train, dtype=torch.float32), torch.tensor(y_test, dtype=torch.float32)  # (N,)
    if learner == "cnn":
        net = nn.Sequential(nn.Conv2d(3, 32, 5, 2, 2), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                            nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1))
        params = list(net.parameters())

        def guess(x):
            return net(x)[:, 0]  # (B,)
    else:
        vit, head = model.pretrained, nn.Linear(2 * model.config.vit.embed_dim, 1)
        params = [*vit.parameters(), *head.parameters()]

        def guess(x):
            tokens = vit.intermediate_layers(x)[-1]  # (B, N, D)
            return head(torch.cat([tokens.mean(1), tokens.amax(1)], -1))[:, 0]  # (B,)
    optimizer = torch.optim.AdamW(params, lr=lr)
    centre = y_train.mean()
    curve = []
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(x_train), (16,))
        loss = ((guess(x_train[pick]) - (y_train[pick] - centre)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(steps // 4, 1) == 0 or step == steps:
            with torch.no_grad():
                g = torch.cat([guess(x_test[i:i + 32]) for i in range(0, len(x_test), 32)]) + centre  # (N,)
            curve.append({"step": step, "test_corr": float(np.corrcoef(g, y_test)[0, 1]),
                          "test_mean_abs_error": float((g - y_test).abs().mean())})
    return {"family": family, "learner": learner, "lr": lr, "start": str(start) if model and start else "scratch",
            "prior_mean_abs_error": float((y_test - centre).abs().mean()), "curve": curve}


def memory_table(results: dict) -> str:
    lines = table({results.get("family", "memory"): results["memory"]}).splitlines()
    frames = [0, 2, 4, 6, 8, 10, 11]
    lines += ["", "| mean \\|log scale error\\| at frame | " + " | ".join(map(str, frames)) + " |",
              "|---|" + "---|" * len(frames)]
    rows = [("ideal observer, this frame's markers", results["oracle"]["frame"]),
            ("ideal observer, all frames so far", results["oracle"]["sequence"]),
            ("markers in view (mean count)", results["oracle"]["visible"])]
    rows += [(f"model: {label}", r["unaligned"]["log_scale_error_per_frame"]) for label, r in results["memory"].items()]
    rows += [("carried vs reset, relative L2 difference", results["influence_per_frame"])]
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join(f"{values[f]:.3f}" for f in frames) + " |")
    return "\n".join(lines)


def memory_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, r in results["memory"].items():
        axes[0].plot(r["unaligned"]["log_scale_error_per_frame"], marker="o", label=label)
        axes[1].plot(r["aligned"]["abs_rel_per_frame"], marker="o", label=label)
    axes[0].plot(results["oracle"]["frame"], "k:", label="ideal observer, this frame's markers")
    axes[0].plot(results["oracle"]["sequence"], "k--", label="ideal observer, all frames so far")
    axes[0].set_title(f"{results.get('family', 'memory')}: |log scale error| per frame (no alignment)")
    axes[1].set_title("AbsRel per frame (one fit per sequence)")
    for ax in axes:
        ax.set_xlabel("frame index (the cue leaves the view as the camera pans)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["synth", "train", "eval", "all", "memory", "memory-eval", "cue", "learnable",
                                      "fit"],
                   help="memory: the toy memory task end to end (data, training, evaluation); memory-eval: its "
                        "evaluation alone; cue: whether the single-image model reads the scale family's markers; "
                        "learnable: whether the cue is learnable by regressing the scale directly (--family, "
                        "--learner); fit: whether the single-image model fits its own training clips, against a prior "
                        "map and an 8-frame overfit (--checkpoint, repeatable)")
    p.add_argument("--workdir", default="tiny", help="data/ and runs/ are made here (default: tiny)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training (default: 2)")
    p.add_argument("--json", help="write the evaluation here")
    p.add_argument("--plot", help="write the per-frame plot here (PNG)")
    p.add_argument("--checkpoint", action="append",
                   help="memory-eval, cue: this checkpoint instead of the step's last; fit: the checkpoints compared "
                        "(repeatable; default: the image step's last)")
    p.add_argument("--memory-family", choices=list(MEMORY_FAMILIES), default="memory",
                   help="memory-eval: the family evaluated (memory-tiles: the cue is a square of paving tiles of "
                        "known size; memory-coded: the ablation whose markers' colour names the scale; "
                        "default: memory)")
    p.add_argument("--family", choices=list(CUES), default="scale",
                   help="cue: the family whose markers are read (scale: the bundled recipe's single-image "
                        "model; the memory families: the memory task's step 1 of that family; default: scale); "
                        "learnable: the memory family whose frames are regressed")
    p.add_argument("--learner", choices=["cnn", "vit"], default="cnn",
                   help="learnable: a small CNN from scratch, or the family's single-image model's ViT")
    p.add_argument("--steps", type=int, default=800, help="learnable: steps of batch 16 (default: 800)")
    p.add_argument("--lr", type=float, default=1e-3, help="learnable: AdamW's rate (default: 1e-3)")
    args = p.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("synth", "all"):
        synth(work)
    if args.stage in ("train", "all"):
        train(work, args.threads)
    if args.checkpoint and len(args.checkpoint) > 1 and args.stage != "fit":
        p.error(f"{args.stage}: give --checkpoint once (only fit compares several)")
    checkpoint = Path(args.checkpoint[0]) if args.checkpoint else None
    if args.stage == "fit":
        chosen = [Path(c) for c in args.checkpoint] if args.checkpoint else [last_checkpoint(work, "image")]
        results = fit(work, {f"{c.parent.name}/{c.stem}": c for c in chosen})
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0
    if args.stage == "learnable":
        if args.family not in MEMORY_FAMILIES:
            p.error(f"learnable: --family must be one of the memory families: {', '.join(MEMORY_FAMILIES)}")
        results = learnable(work, args.family, args.learner, args.steps, args.lr,
                            checkpoint)
        print(json.dumps(results, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0
    if args.stage == "cue":
        results = cue(work, args.family, checkpoint)
        print(json.dumps(results, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0
    if args.stage in ("memory", "memory-eval"):
        if args.stage == "memory":
            memory_synth(work)
            memory_train(work, args.threads)
        results = memory_evaluate(work, checkpoint, args.memory_family)
        print(memory_table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        if args.plot:
            memory_plot(results, Path(args.plot))
        return 0
    if args.stage in ("eval", "all"):
        results = evaluate(work)
        results["oracle"] = oracle()
        print(table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        if args.plot:
            plot(results, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
