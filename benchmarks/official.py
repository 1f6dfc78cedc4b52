"""Side-by-side CPU speed of the official FlashDepth code and ours, same weights, one process.

    python benchmarks/official.py --official /path/to/FlashDepth --model flashdepth-s --size 518x518 \
        [--frames 5] [--warmup 1] [--threads N] [--seed 0] [--official-flops] [--json out.json]

``--official`` is a plain checkout of Eyeline-Research/FlashDepth (the layout we match is commit
0db56d3). The checkout is not modified: the needed parts are copied into a temporary folder and
made to run on a CPU there (list below), so a fresh clone reproduces the figures. Besides torch
the official code needs ``einops`` (and ``omegaconf`` to read its configs like its own launcher
does; PyYAML is the fallback), ``huggingface_hub``, ``matplotlib`` and ``numpy``.

What it does:

1. builds the official model from the variant's own ``configs/<variant>/config.yaml`` the way its
   ``utils/init_setup.setup_model`` does (``inference=True``), fills every parameter with seeded
   random values (the zero-initialised output layers included, so the Mamba and fusion paths
   count in the comparison; a positive bias on the last conv keeps the depth above the final ReLU),
   and saves ``{"model": state_dict, "step": 0}`` to a temporary ``.pth``;
2. loads that file into ours with ``flashdepth.load_model(path, variant=name)`` (strict);
3. streams the same frames (seeded N(0,1) images, i.e. already ImageNet-normalised) through both,
   state carried, fp32, eager, frames interleaved (the order alternates every frame) after
   ``--warmup`` frames, and reports the median ms/frame of each and ours/official;
4. checks the outputs agree (relative L2 over all streamed frames; the timing is meaningless when
   it is not ~1e-5) and reports FLOPs per frame (ours, ``flashdepth.apps.bench.flops_per_frame``;
   the official model's too with ``--official-flops``) and the fraction of the machine's measured
   fp32 matmul peak that each reaches with ours' FLOP count (the work the frame needs).

The official model is driven exactly like the body of its ``FlashDepth.forward`` video loop:
``mamba.start_new_sequence()`` once, then per frame ``get_dpt_features(frame, input_shape=(B,C,H,W))``,
``final_head(features, H // 14, W // 14)``, ``torch.clip(depth, min=0)``; the Mamba state lives in
the model (``mamba.inference_params``), as in the official code. Its launcher adds bf16 autocast
and ``torch.compile``; both are left out here (fp32 eager on both sides).

CPU replacements, every one of them (the rest of the official computation runs untouched):

* ``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined`` (Triton SSD kernels) ->
  ``_ssd_chunk_scan`` below: the same chunked SSD scan (chunk 256, softplus(dt + dt_bias),
  optional initial state, final state returned, D skip) in plain PyTorch;
  ``mamba_split_conv1d_scan_combined`` (fused training path, never reached with inference
  params) -> raises;
* ``mamba_ssm.ops.triton.layernorm_gated.RMSNorm`` (Triton gated RMSNorm) -> ``_GatedRMSNorm``:
  the same parameters and formula (norm(x * silu(z)) per group, fp32 inside) in PyTorch;
* ``mamba_ssm/__init__.py``: its imports of ``selective_scan_interface`` (CUDA extension),
  ``mamba_simple`` and ``mixer_seq_simple`` (Triton layer norm) are dropped; ``Mamba2`` is still
  imported from ``mamba_ssm.modules.mamba2`` (the repo's own, with its ``inference_forward``);
  ``selective_state_update`` (Triton, decode step only) is absent, which mamba2.py allows;
* ``xformers.ops`` (installed by the official setup; DINOv2's ``MemEffAttention`` uses
  ``memory_efficient_attention``) -> a module whose ``memory_efficient_attention`` is
  ``torch.nn.functional.scaled_dot_product_attention`` on the (B, N, heads, dim) layout and
  ``unbind`` is ``torch.unbind``; ``fmha`` / ``scaled_index_add`` / ``index_select_cat`` (nested
  tensors and stochastic depth, training only) raise;
* ``flash_attn.flash_attn_func`` (the fusion's cross-attention, FlashDepth Full) ->
  scaled_dot_product_attention on the same layout (non-causal, default scale);
* ``utils.eval_metrics.metrics.compute_depth_metrics`` (evaluation only; pulls in scipy) -> a
  stub that raises;
* packages renamed in the copy so they can live beside ours in one process: ``flashdepth`` ->
  ``fdofficial`` (its imports are relative), ``utils`` -> ``fdofficial_utils`` (two import lines
  of model.py rewritten); the ``.cuda()`` / ``torch.cuda.current_device()`` calls are all in the
  training, validation and video-loop wrappers, which are not called.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import flashdepth
from flashdepth.apps.bench import flops_per_frame, machine, matmul_peak_gflops, time_interleaved

CONFIG_DIRS = {"flashdepth-s": "flashdepth-s", "flashdepth-l": "flashdepth-l", "flashdepth": "flashdepth"}


# ----------------------------------------------------------------------------- CPU kernels
def _ssd_chunk_scan(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                    seq_idx=None, cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
                    return_final_states=False, return_varlen_states=False):
    """Mamba2's SSD scan with mamba_chunk_scan_combined's signature, in PyTorch.

    x (b, l, h, p), dt (b, l, h), A (h), B/C (b, l, g, n); per head
    s_t = exp(dt_t A) s_{t-1} + dt_t x_t B_t^T, y_t = C_t s_t (+ D x_t). Inside a chunk the scan is
    a masked decayed (C B^T) product, across chunks the state is carried.
    """
    if seq_idx is not None or cu_seqlens is not None or return_varlen_states:
        raise NotImplementedError("varlen / seq_idx SSD is not needed for streaming inference")
    b, length, h, p = x.shape
    n = B.shape[-1]
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit != (0.0, float("inf")):
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    rep = h // B.shape[2]  # heads per group
    Bh = B.float().repeat_interleave(rep, dim=2)
    Ch = C.float().repeat_interleave(rep, dim=2)
    xf = x.float()
    state = (torch.zeros(b, h, p, n, device=x.device) if initial_states is None else initial_states.float())
    ys = []
    for s in range(0, length, chunk_size):
        xs, dts, Bs, Cs = xf[:, s:s + chunk_size], dt[:, s:s + chunk_size], Bh[:, s:s + chunk_size], Ch[:, s:s + chunk_size]
        q = xs.shape[1]
        a = dts * A.float()  # (b, q, h) log-decay of each step
        cum = a.cumsum(1)
        seg = cum[:, :, None, :] - cum[:, None, :, :]  # (b, i, j, h): decay from j to i
        causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
        decay = torch.exp(seg.masked_fill(~causal[None, :, :, None], float("-inf")))
        scores = torch.einsum("bihn,bjhn->bijh", Cs, Bs) * decay * dts[:, None, :, :]
        y = torch.einsum("bijh,bjhp->bihp", scores, xs)
        y = y + torch.einsum("bihn,bhpn->bihp", Cs, state) * torch.exp(cum)[..., None]
        to_end = torch.exp(cum[:, -1:] - cum) * dts  # (b, q, h): weight of each step in the end state
        state = state * torch.exp(cum[:, -1])[:, :, None, None] + torch.einsum("bjh,bjhp,bjhn->bhpn", to_end, xs, Bs)
        ys.append(y)
    y = torch.cat(ys, dim=1)
    if D is not None:
        y = y + xf * (D.float()[:, None] if D.dim() == 1 else D.float())
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(x.dtype)
    return (y, state) if return_final_states else y


def _no_fused_path(*args, **kwargs):
    raise NotImplementedError("the fused Triton training path has no CPU stand-in (inference params are always given)")


class _GatedRMSNorm(torch.nn.Module):
    """mamba_ssm's gated RMSNorm module (same parameters), computed in PyTorch."""

    def __init__(self, hidden_size, eps=1e-5, group_size=None, norm_before_gate=True, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate

    def forward(self, x, z=None):
        dtype = x.dtype
        x = x.float()
        if z is not None and not self.norm_before_gate:
            x = x * F.silu(z.float())
        group = self.group_size or x.shape[-1]
        xg = x.unflatten(-1, (-1, group))
        out = (xg * torch.rsqrt(xg.square().mean(-1, keepdim=True) + self.eps)).flatten(-2) * self.weight.float()
        if self.bias is not None:
            out = out + self.bias.float()
        if z is not None and self.norm_before_gate:
            out = out * F.silu(z.float())
        return out.to(dtype)


def _sdpa_bnhd(q, k, v, attn_bias=None, p=0.0, scale=None, **kwargs):
    """xformers / flash-attn layout (B, N, heads, dim) through torch's fused attention."""
    if attn_bias is not None:
        raise NotImplementedError("attention bias (nested tensors) is training-only")
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
    return out.transpose(1, 2)


def _flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **kwargs):
    if causal:
        raise NotImplementedError("causal flash attention is not used by FlashDepth")
    return _sdpa_bnhd(q, k, v, scale=softmax_scale)


def _raises(what):
    def fn(*args, **kwargs):
        raise NotImplementedError(f"{what} is training-only and has no CPU stand-in here")
    return fn


# ----------------------------------------------------------------------------- the official code, patched
# (file, old, new): text edits of the temporary copy; each must apply, so an upstream change fails loudly
TEXT_EDITS = [
    ("fdofficial/model.py", "from utils.helpers import *", "from fdofficial_utils.helpers import *"),
    ("fdofficial/model.py", "from utils.eval_metrics.metrics import compute_depth_metrics",
     "from fdofficial_utils.eval_metrics.metrics import compute_depth_metrics"),
    ("mamba_ssm/__init__.py", "from mamba_ssm.ops.selective_scan_interface import selective_scan_fn, mamba_inner_fn\n", ""),
    ("mamba_ssm/__init__.py", "from mamba_ssm.modules.mamba_simple import Mamba\n", ""),
    ("mamba_ssm/__init__.py", "from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel\n", ""),
]


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def prepare_official(checkout: Path, workdir: Path, attention: str = "sdpa") -> Path:
    """Copy the parts of the official checkout that inference needs into ``workdir``, apply the
    CPU replacements, and put it first on sys.path. Returns the copy's root.

    ``attention``: ``sdpa`` gives DINOv2 an ``xformers.ops`` whose memory-efficient attention is
    PyTorch's fused attention (what the official setup runs, on a CPU); ``fallback`` gives it no
    xformers at all, so the official DINOv2 layers take their own path for that case (explicit
    ``q @ k^T``, softmax, ``@ v``) -- the official code exactly as it runs where xformers is absent."""
    root = workdir / "official"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(checkout / "flashdepth", root / "fdofficial", ignore=ignore)
    shutil.copytree(checkout / "utils", root / "fdofficial_utils", ignore=ignore)
    shutil.copytree(checkout / "mamba" / "mamba_ssm", root / "mamba_ssm", ignore=ignore)
    shutil.copytree(checkout / "configs", root / "configs")
    for rel, old, new in TEXT_EDITS:
        path = root / rel
        text = path.read_text()
        if old not in text:
            raise RuntimeError(f"{rel}: expected line not found (is this the official layout?): {old!r}")
        path.write_text(text.replace(old, new, 1))
    # modules injected rather than edited: third-party CUDA packages the copy does not contain
    if attention == "fallback":
        sys.modules["xformers"] = None  # ``import xformers...`` raises ImportError: DINOv2's own fallback
        sys.modules["xformers.ops"] = None
    else:
        ops = _module("xformers.ops", memory_efficient_attention=_sdpa_bnhd, unbind=torch.unbind,
                      fmha=types.SimpleNamespace(BlockDiagonalMask=_raises("xformers fmha")),
                      scaled_index_add=_raises("scaled_index_add"), index_select_cat=_raises("index_select_cat"))
        _module("xformers", ops=ops)
    _module("flash_attn", flash_attn_func=_flash_attn_func)
    _module("mamba_ssm.ops.triton.layernorm_gated", RMSNorm=_GatedRMSNorm)
    _module("mamba_ssm.ops.triton.ssd_combined", mamba_chunk_scan_combined=_ssd_chunk_scan,
            mamba_split_conv1d_scan_combined=_no_fused_path)
    _module("fdofficial_utils.eval_metrics.metrics", compute_depth_metrics=_raises("compute_depth_metrics"))
    sys.path.insert(0, str(root))
    return root


class _AttrDict(dict):
    """Attribute access over a YAML mapping, for when omegaconf is not installed."""

    def __getattr__(self, key):
        try:
            value = self[key]
        except KeyError as e:
            raise AttributeError(key) from e
        return _AttrDict(value) if isinstance(value, dict) else value


def load_config(path: Path):
    try:
        from omegaconf import OmegaConf
        return OmegaConf.load(path), "omegaconf"
    except ImportError:
        import yaml
        return _AttrDict(yaml.safe_load(path.read_text())), "pyyaml"


def build_official(root: Path, variant: str):
    """The official FlashDepth as its setup_model builds it for inference (random weights)."""
    from fdofficial.model import FlashDepth as OfficialFlashDepth

    cfg, reader = load_config(root / "configs" / CONFIG_DIRS[variant] / "config.yaml")
    model = OfficialFlashDepth(**dict(batch_size=cfg.training.batch_size, hybrid_configs=cfg.hybrid_configs,
                                      training=False, **cfg.model))
    return model.eval().requires_grad_(False), reader


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded non-zero weights everywhere; norms near 1, Mamba's decays in a range where the
    carried state matters; each matrix at unit gain so activations keep their size."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        leaf, owner = name.rsplit(".", 1)[-1], name.rsplit(".", 2)[-2] if name.count(".") else ""
        if leaf == "A_log":
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 4.0)
        elif leaf == "dt_bias":
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 3.0)
        elif leaf == "gamma" or (leaf == "weight" and "norm" in owner):
            p.copy_(1.0 + 0.1 * noise)
        elif p.dim() >= 2:
            p.copy_(noise / p[0].numel() ** 0.5)
        else:
            p.copy_(0.2 * noise)
    # random weights leave most depths under the final ReLU; a positive last bias keeps them alive
    model.depth_head.scratch.output_conv2[2].bias.fill_(2.0)


def check_manifest(model: torch.nn.Module, manifest: Path) -> None:
    want = {t["key"]: tuple(t["shape"]) for t in json.loads(manifest.read_text())["tensors"]}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) + [k for k in want if k in have and want[k] != have[k]]
        raise RuntimeError(f"official model does not match {manifest.name}: {diff[:10]}")


def official_commit(checkout: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def official_runner(model):
    """One frame of the official video loop; its Mamba state stays inside the model."""
    patch = model.patch_size

    def step(frame, state):
        b, c, h, w = frame.shape
        features = model.get_dpt_features(frame, input_shape=(b, c, h, w))
        depth = model.final_head(features, h // patch, w // patch)
        return torch.clip(depth, min=0), state

    return step


def recording(runner, outputs: list):
    def step(frame, state):
        depth, state = runner(frame, state)
        outputs.append(depth.reshape(depth.shape[0], *depth.shape[-2:]).clone())
        return depth, state
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="checkout of Eyeline-Research/FlashDepth")
    parser.add_argument("--model", default="flashdepth-s", choices=sorted(CONFIG_DIRS))
    parser.add_argument("--size", default="518x518", help="HxW, multiples of 14")
    parser.add_argument("--frames", type=int, default=5, help="timed frames (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder with manifest_<model>.json: check the official state-dict layout")
    parser.add_argument("--official-attention", choices=["sdpa", "fallback"], default="sdpa",
                        help="DINOv2 attention of the official code: xformers stood in by PyTorch's fused attention "
                             "(sdpa, default), or the official layers' own path without xformers (fallback)")
    parser.add_argument("--official-flops", action="store_true", help="also count the official model's FLOPs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    checkout = args.official.resolve()

    # the copy stays until the end: the official code may import lazily from it
    tmp = tempfile.mkdtemp(prefix="fd-official-")
    try:
        run(args, checkout, Path(tmp), size, device, command)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, checkout: Path, tmp: Path, size, device, command) -> None:
    root = prepare_official(checkout, tmp, args.official_attention)
    torch.manual_seed(args.seed)
    official, reader = build_official(root, args.model)
    if args.reference is not None:
        check_manifest(official, args.reference / f"manifest_{args.model}.json")
    randomize(official, args.seed)
    weights = tmp / f"{args.model}.pth"
    torch.save({"model": official.state_dict(), "step": 0}, weights)
    ours = flashdepth.load_model(weights, variant=args.model)


    load_before = os.getloadavg()  # other work on the machine shows here: the absolute figures need an idle one
    gen = torch.Generator().manual_seed(args.seed + 1)
    frames = [torch.randn(1, 3, *size, generator=gen) for _ in range(args.warmup + args.frames)]
    outputs = {"official": [], "ours": []}
    official.mamba.start_new_sequence()  # as the official video loop does before the first frame
    runners = {"official": recording(official_runner(official), outputs["official"]),
               "ours": recording(ours, outputs["ours"])}
    times = time_interleaved(runners, frames, args.warmup, device)

    a, b = torch.stack(outputs["official"]), torch.stack(outputs["ours"])
    rel_l2 = float((b - a).norm() / a.norm())
    per_frame = [float((y - x).norm() / x.norm()) for x, y in zip(a, b)]
    official_ms, ours_ms = float(np.median(times["official"])), float(np.median(times["ours"]))

    flops = flops_per_frame(ours, size, device)
    official_flops = None
    if args.official_flops:
        from torch.utils.flop_counter import FlopCounterMode
        step, x = official_runner(official), frames[0]
        with torch.inference_mode():
            official.mamba.start_new_sequence()
            step(x, None)
            with FlopCounterMode(display=False) as counter:
                step(x, None)
        official_flops = int(counter.get_total_flops())
    peak = matmul_peak_gflops(device)

    record = {
        "model": args.model, "size": f"{size[0]}x{size[1]}", "precision": "fp32", "device": "cpu",
        "frames": args.frames, "warmup": args.warmup, "seed": args.seed,
        "official_ms": official_ms, "ours_ms": ours_ms, "ratio_ours_over_official": ours_ms / official_ms,
        "official_ms_per_frame": times["official"], "ours_ms_per_frame": times["ours"],
        "parity_rel_l2": rel_l2, "parity_rel_l2_per_frame": per_frame, "official_depth_norm": float(a.norm()),
        "gflop_per_frame": flops / 1e9,
        "official_gflop_per_frame": None if official_flops is None else official_flops / 1e9,
        "matmul_peak_gflops": peak,
        "fraction_of_peak_official": flops / 1e6 / official_ms / peak,
        "fraction_of_peak_ours": flops / 1e6 / ours_ms / peak,
        "official_commit": official_commit(checkout), "official_config_reader": reader,
        "official_attention": args.official_attention,
        "machine": {**machine(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "command": command,
    }
    print(f"{args.model} {record['size']} fp32 CPU, {torch.get_num_threads()} threads, "
          f"{args.frames} timed frames after {args.warmup} warm-up")
    print(f"parity: relative L2 of depth over {len(per_frame)} streamed frames = {rel_l2:.2e} "
          f"(per frame: {', '.join(f'{v:.1e}' for v in per_frame)})")
    if not rel_l2 < 1e-4:
        print("WARNING: the two implementations disagree; the timing below compares different computations")
    print("| impl | ms/frame (median) | GFLOP/frame | fraction of fp32 matmul peak |")
    print("|---|---|---|---|")
    print(f"| official | {official_ms:.1f} | {flops / 1e9:.1f}"
          f"{'' if official_flops is None else f' (counted on it: {official_flops / 1e9:.1f})'} | "
          f"{record['fraction_of_peak_official']:.1%} |")
    print(f"| ours | {ours_ms:.1f} | {flops / 1e9:.1f} | {record['fraction_of_peak_ours']:.1%} |")
    print(f"ours / official = {record['ratio_ours_over_official']:.3f}; matmul peak {peak:.1f} GFLOP/s; "
          f"official commit {record['official_commit']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
