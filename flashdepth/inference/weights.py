"""The one weight loader: read a checkpoint safely, detect its source, load it strictly.

Sources, told apart by their keys:
  * ours          -- ``{"model": state_dict, "config": {...}, "format": "flashdepth", ...}``
  * FlashDepth    -- the published checkpoints, ``{"model": state_dict, "step": ..., ...}``
                     with ``mamba.*`` keys (and ``teacher_model.*`` for the Full model)
  * Video Depth Anything -- a bare state dict with ``head.motion_modules.*`` keys (the relative and
                     metric models share one layout: a metric file is loaded by name or ``variant=``)
  * Depth Anything V2 -- a bare state dict without ``mamba.*`` keys
Files are read with ``torch.load(map_location="cpu", weights_only=True)`` (never running code from
the file) or as ``.safetensors``. ``module.`` / ``_orig_mod.`` prefixes (DDP, torch.compile) are
stripped. Loading is ``strict=True``; a mismatch names the missing and unexpected keys and shapes.
"""

from __future__ import annotations

import functools
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..config import ModelConfig, model_config_from_dict
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError, WeightsNotFoundError
from .registry import get_config, get_spec, list_models
from ..utils import first_line

FORMAT = "flashdepth"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")


# ------------------------------------------------------------------------------------ reading
def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``path`` -> (state dict with prefixes stripped, the other top-level entries)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist (or is not a file); check the path")
    if path.suffix == ".safetensors":
        raw, meta = _read_safetensors(path)
    else:
        raw = _torch_load(path)
        meta = {}
        if isinstance(raw, Mapping) and not _is_state_dict(raw):
            for key in ("model", "state_dict"):
                if key in raw and isinstance(raw[key], Mapping):
                    meta = {k: v for k, v in raw.items() if k != key}
                    raw = raw[key]
                    break
    if not isinstance(raw, Mapping) or not _is_state_dict(raw):
        raise CheckpointError(f"{path} holds no state dict (expected a mapping of names to tensors, "
                              "optionally under 'model'); is it a model checkpoint?")
    return {_strip(k): v for k, v in raw.items()}, meta


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _torch_load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            # A plain pickle (not torch.save) triggers a protocol warning before our one-line error.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types here (UnpicklingError, RuntimeError, KeyError, ...)
        text = str(e).lower()
        if "global" in text or _pickle_imports_objects(path):
            raise CheckpointError(f"refused to load {path}: it contains Python objects other than tensors and "
                                  "plain data, and unpickling them could run code; use a plain state dict") from None
        if isinstance(e, (EOFError, zipfile.BadZipFile)) or any(w in text for w in ("zip", "eof", "central directory")):
            raise CheckpointError(f"{path} is truncated or corrupt ({first_line(e)}); download it again") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}: {first_line(e)})") from None


def _pickle_imports_objects(path: Path, limit: int = 1 << 24) -> bool:
    """True if ``path`` is a plain pickle that imports Python objects (read without executing it)."""
    import io
    import pickletools

    with open(path, "rb") as f:
        data = f.read(limit)
    if not data.startswith(b"\x80"):
        return False
    try:
        for opcode, _, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE"):
                return True
    except Exception:  # a malformed or truncated stream: not a loadable pickle either way
        return False
    return False


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise CheckpointError(f"{path} is a .safetensors file; install the 'safetensors' package to read it") from None
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as e:  # safetensors raises its own SafetensorError and OSError types
        raise CheckpointError(f"{path} is not a readable .safetensors file ({first_line(e)})") from None
    meta: dict[str, Any] = {}
    if "config" in metadata:
        try:
            meta["config"] = json.loads(metadata["config"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: the 'config' metadata is not valid JSON") from None
        meta["format"] = metadata.get("format", "")
    return tensors, meta


# ---------------------------------------------------------------------------------- detection
@functools.cache
def registry_layout(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a registered model's state dict (built on the meta device: no memory)."""
    from ..models import build_model

    with torch.device("meta"):
        model = build_model(get_config(name))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _layout_differences(layout: Mapping[str, tuple], state_dict: Mapping[str, torch.Tensor]) -> int:
    keys = set(layout) ^ set(state_dict)
    shapes = sum(1 for k in set(layout) & set(state_dict) if tuple(state_dict[k].shape) != layout[k])
    return len(keys) + shapes


def checkpoint_source(state_dict: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]] = None) -> str:
    """Which family wrote a checkpoint, from its keys (ours: from the stored format)."""
    meta = meta or {}
    if meta.get("format") == FORMAT:
        return "flashdepth (with config)"
    if any(k.startswith("head.motion_modules.") for k in state_dict):
        return "Video Depth Anything"
    if any(k.startswith("mamba.") for k in state_dict):
        return "FlashDepth"
    if any(k.startswith("depth_head.") for k in state_dict):
        return "Depth Anything V2"
    return "unknown"


def detect_variant(state_dict: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]] = None) -> ModelConfig:
    """The config of the model a state dict was saved from.

    Ours store their config. Others (the published FlashDepth and Depth Anything V2 files) are
    matched, key by key and shape by shape, against every registered model.
    """
    meta = meta or {}
    if meta.get("format") == FORMAT and isinstance(meta.get("config"), Mapping):
        try:
            return model_config_from_dict(meta["config"])
        except ConfigError as e:
            raise CheckpointError(f"the checkpoint's stored config is invalid: {e}") from None
    differences = {name: _layout_differences(registry_layout(name), state_dict) for name in list_models()}
    closest = min(differences, key=differences.get)
    if differences[closest] == 0:
        return get_config(closest)
    raise CheckpointError(f"these {checkpoint_source(state_dict)} weights match no registered model (closest: {closest}, "
                          f"{differences[closest]} keys or shapes differ); pass the model's config or a "
                          f"registered variant explicitly (variant=...), one of: {', '.join(list_models())}")


# ------------------------------------------------------------------------------------ loading
def check_fit(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str,
              allow_missing_prefixes: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError naming every missing/unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.startswith(allow_missing_prefixes)]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            shown = "; ".join(items[:6]) + (f"; and {len(items) - 6} more" if len(items) > 6 else "")
            problems.append(f"{len(items)} {label} ({shown})")
    if problems:
        raise CheckpointError(f"{what}: {', '.join(problems)}")


def load_state_dict_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    check_fit(model, state_dict, what)
    model.load_state_dict(state_dict, strict=True)


def model_from_checkpoint(path: str | Path, variant: Optional[str | ModelConfig] = None):
    """Build the model a checkpoint file describes (or ``variant``) and load it strictly.

    A Depth Anything V2 checkpoint with ``variant="flashdepth-s"`` / ``"flashdepth-l"`` builds that
    FlashDepth model with its temporal module at the published zero initialisation (for training).
    """
    from ..models import build_model

    state_dict, meta = read_checkpoint(path)
    if variant is None:
        config = detect_variant(state_dict, meta)
        detected = config.name
    else:
        config = variant if isinstance(variant, ModelConfig) else get_config(variant)
        try:
            detected = detect_variant(state_dict, meta).name
        except CheckpointError:
            detected = f"unrecognised {checkpoint_source(state_dict, meta)}"
    model = build_model(config)
    if config.temporal is not None and config.fusion is None and _is_single_frame_of(state_dict, model):
        # Depth Anything V2 -> FlashDepth-S/-L: every key but the temporal module must be there.
        check_fit(model, state_dict, f"{path} does not fit {config.name}", allow_missing_prefixes=("mamba.",))
        model.load_state_dict(state_dict, strict=False)
        return model
    load_state_dict_into(model, state_dict, f"{path} ({detected} weights) does not fit {config.name}")
    return model


def _is_single_frame_of(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> bool:
    """True when ``state_dict`` is ``model`` without its temporal module (Depth Anything V2 weights
    for a FlashDepth-S/-L model: the start of training)."""
    own = model.state_dict()
    return (not any(k.startswith("mamba.") for k in state_dict)
            and {k for k in own if not k.startswith("mamba.")} == set(state_dict))


def save_checkpoint(model: torch.nn.Module, path: str | Path, **extra: Any) -> Path:
    """Write ``{'model': state_dict, 'config': ..., 'format': 'flashdepth', **extra}``.

    The published layout plus the config, so :func:`flashdepth.load_model` rebuilds the model
    with no other information. ``.safetensors`` paths store the config as metadata.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        if extra:
            raise CheckpointError(".safetensors files hold weights and config only; save training state to a .pth")
        save_file(state, str(path), metadata={"format": FORMAT, "config": json.dumps(config)})
    else:
        torch.save({"model": state, "config": config, "format": FORMAT, "format_version": FORMAT_VERSION, **extra}, path)
    return path


# -------------------------------------------------------------------------------------- hub
def bundled_weights(name: str) -> Path:
    """The path of a registered model's weights shipped inside the package."""
    from importlib.resources import files

    packaged = get_spec(name).weights
    path = Path(str(files("flashdepth") / "assets" / packaged.filename))
    if not path.is_file():
        raise WeightsNotFoundError(f"{name}: its bundled weights {path} are missing from this installation; "
                                   "reinstall flashdepth (pip install --force-reinstall flashdepth)")
    return path


def download_weights(name: str) -> Path:
    """Fetch the published weights of a registered model into the Hugging Face hub cache
    (weights bundled with the package are returned from the package)."""
    from .registry import PackagedFile

    if isinstance(get_spec(name).weights, PackagedFile):
        return bundled_weights(name)
    hub_file = get_spec(name).weights
    advice = (f"download {hub_file.url} and pass its path (flashdepth.load_model(PATH) or --checkpoint PATH), "
              f"or fetch it into the hub cache with `hf download {hub_file.repo_id} {hub_file.filename}`")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsNotFoundError(f"cannot download {name} weights: huggingface_hub is not installed; {advice}") from None
    try:
        from huggingface_hub.utils import logging as hub_logging

        verbosity = hub_logging.get_verbosity()
        hub_logging.set_verbosity_error()  # its retry warnings would bury our one-line message
    except Exception:
        hub_logging = None
    try:
        return Path(hf_hub_download(repo_id=hub_file.repo_id, filename=hub_file.filename))
    except Exception as e:  # offline, unreachable, gated, missing file: all end the same way
        raise WeightsNotFoundError(f"could not get {hub_file.filename} from the Hugging Face repo {hub_file.repo_id} "
                                   f"({type(e).__name__}: {first_line(e)}); {advice}") from None
    finally:
        if hub_logging is not None:
            hub_logging.set_verbosity(verbosity)


def load_model(name_or_path: str | Path, variant: Optional[str | ModelConfig] = None,
               device: Optional[str | torch.device] = None, dtype: Optional[torch.dtype] = None):
    """Load a model ready for inference: eval mode, parameters not requiring gradients (so a plain
    ``model(frame, state)`` loop builds no autograd graph; training opts in).

    ``name_or_path``: a registered name (see :func:`flashdepth.list_models`), whose published
    weights are downloaded into the hub cache, or a path to a checkpoint (``.pth`` / ``.pt`` /
    ``.safetensors``). ``variant`` forces the model to build (detected from the keys otherwise).
    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``; defaults to CPU.
    """
    target = resolve_device(device) if device is not None else None  # fails before any download
    if isinstance(name_or_path, str) and name_or_path in list_models() and not Path(name_or_path).exists():
        path = download_weights(name_or_path)
        variant = variant or name_or_path
    else:
        path = Path(name_or_path)
    model = model_from_checkpoint(path, variant)
    model.requires_grad_(False)
    if target is not None or dtype is not None:
        model = model.to(device=target, dtype=dtype)
    return model.eval()
