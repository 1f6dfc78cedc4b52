"""The exported graph: what goes in, what comes out, and the metadata that describes it.

Inputs: ``frame`` float32 (B, 3, H, W), ImageNet-normalised RGB at the exported size, and for the
streaming models ``state_in_0`` ... ``state_in_{k-1}`` float32 (B, nheads, headdim, d_state), the
tensors of :attr:`flashdepth.StreamState.ssm` in order. Outputs: ``depth`` float32 (B, H, W),
inverse depth on the model's scale, and ``state_out_0`` ... ``state_out_{k-1}``. All-zero
states start a stream (the SSM recurrence from a zero state is what ``state=None`` computes).
Per-frame models (Depth Anything V2) have ``frame`` -> ``depth`` only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..config import ModelConfig, from_dict
from ..errors import ConfigError, ExportError, GraphFileError, require_modules
from .runtimes import EXPORT_NEEDS

#: metadata_props of every exported graph (all values are strings; lists and dicts are JSON)
METADATA_KEYS = {
    "flashdepth.version": "the flashdepth version that wrote the graph",
    "flashdepth.variant": "the model's name (ModelConfig.name)",
    "flashdepth.config": "the whole ModelConfig as JSON (rebuilds the model's description)",
    "flashdepth.patch_size": "the ViT patch size; H and W are multiples of it",
    "flashdepth.input_size": "[H, W] of the frame input",
    "flashdepth.input_mean": "RGB mean subtracted from [0, 1] pixels",
    "flashdepth.input_std": "RGB std the centred pixels are divided by",
    "flashdepth.batch": "the batch size, or \"dynamic\"",
    "flashdepth.state_shapes": "[[B, nheads, headdim, d_state], ...] per state_in_i (B: the batch); [] if per-frame; "
                               "Video Depth Anything: [[B, 1], [B, tokens, slots, channels], ...] (a started flag, then "
                               "the frame cache of each temporal attention)",
    "flashdepth.precision": "fp32; fp16 (float16 compute inside; inputs and outputs stay float32); int8 (dynamic "
                            "int8 matrix multiplies)",
    "flashdepth.output": "what depth holds",
    "flashdepth.input_layout": "how frame is laid out: NCHW (batch, channel, height, width)",
    "flashdepth.channel_order": "the order of frame's 3 channels: RGB",
    "flashdepth.input_range": "the range pixels are scaled to before input_mean and input_std: [0, 1] (8-bit values "
                              "divided by 255), so frame = (pixels / 255 - input_mean) / input_std",
    "flashdepth.state_feedback": "JSON {state_out_i: state_in_i}: each output feeds the input of the same index on the "
                                 "next frame; all-zero state inputs start a stream",
}

#: keys added after the first graphs were written: documented, written, not required when reading
_ADDED_LATER = frozenset({"flashdepth.input_layout", "flashdepth.channel_order", "flashdepth.input_range",
                          "flashdepth.state_feedback"})

OPSET = 18


class StepGraph(nn.Module):
    """One streaming step as a module of plain tensors: (frame, *state_in) -> (depth, *state_out).

    ``compute_dtype`` float16 runs the model in half precision between float32 inputs and outputs,
    so callers feed the same tensors whatever the graph computes in.
    """

    def __init__(self, model: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.compute_dtype = compute_dtype

    def forward(self, frame: torch.Tensor, *state_in: torch.Tensor):
        video = frame.to(self.compute_dtype)[:, None]  # (B, 1, 3, H, W)
        depth, state_out = self.model.run_frames(video, tuple(state_in) if state_in else None)
        depth = depth[:, 0].float()  # (B, H, W)
        if state_out is None:
            return depth
        return (depth, *(s.float() for s in state_out))


def state_shapes(config: ModelConfig, batch: int = 1, size: Optional[tuple[int, int]] = None
                 ) -> list[tuple[int, ...]]:
    """Shapes of ``state_in_i`` for ``config``: (batch, nheads, headdim, d_state) per Mamba block;
    for Video Depth Anything (``config.motion``), whose cache grows with the frame, those of
    :func:`~flashdepth.models.vda.stream_state_shapes` at ``size`` (H, W)."""
    if config.motion is not None:
        from ..models.vda import stream_state_shapes

        if size is None:
            raise ExportError(f"{config.name}'s stream state depends on the frame size: pass size=(H, W)")
        return stream_state_shapes(config, int(size[0]), int(size[1]), batch)
    t = config.temporal
    if t is None:
        return []
    heads = t.expand * config.dpt.features // t.headdim
    return [(batch, heads, t.headdim, t.d_state)] * t.num_blocks


@dataclass(frozen=True)
class ExportedGraph:
    """What an exported graph holds, read back from its metadata."""

    path: Path
    config: ModelConfig
    size: tuple[int, int]  # (H, W) of the frame input
    batch: Optional[int]  # None: dynamic
    state_shapes: tuple[tuple[int, ...], ...]  # with the batch dimension first (0 if dynamic)
    precision: str

    @property
    def input_names(self) -> list[str]:
        return ["frame"] + [f"state_in_{i}" for i in range(len(self.state_shapes))]

    @property
    def output_names(self) -> list[str]:
        return ["depth"] + [f"state_out_{i}" for i in range(len(self.state_shapes))]


def export_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], *, batch: int = 1,
                dynamic: bool = False, fp16: bool = False, int8: bool = False, opset: int = OPSET) -> ExportedGraph:
    """Write the per-frame step of ``model`` (a :class:`flashdepth.FlashDepth`) as an ONNX graph.

    ``size``: (H, W) of the frames the graph takes, multiples of the patch size (the positional
    embedding is resampled for this token grid, as the PyTorch model does per frame size).
    ``dynamic``: the batch dimension is left free (one graph for any number of streams at once).
    ``fp16``: compute in float16 inside the graph (inputs, outputs and the state stay float32);
    for GPU runtimes -- TensorRT builds its own fp16 engine from the fp32 graph (``--fp16``).
    ``int8``: dynamic int8 quantisation of the matrix multiplies' weights (ONNX Runtime's
    ``quantize_dynamic``; activations are quantised per call), for CPUs without a GPU. It trades
    accuracy for speed: docs/performance.md measures both.
    """
    if fp16 and int8:
        raise ExportError("fp16 and int8 exclude each other: choose one precision for the graph")
    require_modules("ONNX export", EXPORT_NEEDS)
    import onnx

    from .. import __version__

    h, w = (int(v) for v in size)
    model._check_input(3, h, w)  # InputShapeError names the nearest valid size
    config: ModelConfig = model.config
    reference = next(model.parameters())
    dtype = torch.float16 if fp16 else torch.float32
    if fp16 or reference.dtype != torch.float32:
        model = _copy_as(model, dtype)
    # torch.export specialises a dimension of size 1, so a dynamic batch is traced with 2
    example_batch = 2 if dynamic else int(batch)
    frame = torch.zeros(example_batch, 3, h, w, device=reference.device)
    states = [torch.zeros(s, device=reference.device) for s in state_shapes(config, example_batch, (h, w))]
    names = ExportedGraph(Path(path), config, (h, w), None, tuple(map(tuple, state_shapes(config, 1, (h, w)))), "")
    dynamic_shapes = None
    if dynamic:
        b = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = ({0: b}, tuple({0: b} for _ in states))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _quiet_exporter_log(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        try:
            program = torch.onnx.export(StepGraph(model, dtype).eval(), (frame, *states), dynamo=True,
                                        input_names=names.input_names, output_names=names.output_names,
                                        dynamic_shapes=dynamic_shapes, opset_version=opset, verbose=False)
        except Exception as e:  # the exporter raises many kinds; say which model and size failed
            raise ExportError(f"exporting {config.name} at {h}x{w} to ONNX failed: {type(e).__name__}: {e}") from e
    proto = program.model_proto
    shapes = state_shapes(config, 0 if dynamic else int(batch), (h, w))
    meta = {
        "flashdepth.version": __version__,
        "flashdepth.variant": config.name,
        "flashdepth.config": json.dumps(config.to_dict()),
        "flashdepth.patch_size": str(config.vit.patch_size),
        "flashdepth.input_size": json.dumps([h, w]),
        "flashdepth.input_mean": json.dumps(list(config.input.mean)),
        "flashdepth.input_std": json.dumps(list(config.input.std)),
        "flashdepth.batch": "dynamic" if dynamic else str(int(batch)),
        "flashdepth.state_shapes": json.dumps([list(s) for s in shapes]),
        "flashdepth.precision": "fp16" if fp16 else "int8" if int8 else "fp32",
        "flashdepth.output": ("depth in metres" if config.unit.metric else
                              "inverse depth (disparity) on the model's scale (published weights: about 100 / metres); "
                              "0 at the sky"),
        "flashdepth.input_layout": "NCHW",
        "flashdepth.channel_order": "RGB",
        "flashdepth.input_range": "[0, 1]",
        "flashdepth.state_feedback": json.dumps({f"state_out_{i}": f"state_in_{i}" for i in range(len(shapes))}),
    }
    assert set(meta) == set(METADATA_KEYS)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))
    if int8:
        _quantize_int8(path, meta)
    return read_metadata(path)


#: the exporter's logger, and what it says on every export that concerns no flashdepth graph
_EXPORTER_LOGGER = "torch.onnx._internal.exporter._registration"
_EXPORTER_NOISE = "torchvision is not installed"


@contextlib.contextmanager
def _quiet_exporter_log():
    """Drop the exporter's "torchvision is not installed. Skipping torchvision::nms" lines (four per
    export: it registers torchvision's detection ops, which no depth graph uses); anything else it
    logs still shows."""
    logger = logging.getLogger(_EXPORTER_LOGGER)

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_EXPORTER_NOISE)

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _quantize_int8(path: Path, meta: dict[str, str]) -> None:
    require_modules("int8 quantisation", (("onnxruntime", "onnxruntime", "onnx"),))
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.replace(fp32)
    try:
        # MatMul only: the ViT's linear layers hold nearly all of the FLOPs; the convolutions of
        # the DPT stay float (ConvInteger has no fast CPU kernel in ONNX Runtime)
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        fp32.unlink(missing_ok=True)
    proto = onnx.load_model(str(path))
    del proto.metadata_props[:]  # the quantiser does not promise to keep them
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))


def _copy_as(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The same weights in ``dtype``, leaving the caller's model as it is."""
    from ..models import build_model

    copy = build_model(model.config).to(next(model.parameters()).device)
    copy.load_state_dict(model.state_dict())
    return copy.to(dtype).eval().requires_grad_(False)


PRECISIONS = ("fp32", "fp16", "int8")


def read_metadata(path: str | Path) -> ExportedGraph:
    """The description of an exported graph, from its metadata, checked against the graph itself.

    Anything that is not a graph written by :func:`export_onnx` -- not ONNX at all, cut short,
    metadata that is not JSON or contradicts the configuration, a graph whose inputs and outputs
    are not the ones the metadata describes, external data outside the graph's folder -- is a
    :class:`~flashdepth.errors.GraphFileError` saying what is wrong, before any runtime sees it.
    """
    require_modules("reading an ONNX graph", EXPORT_NEEDS[:1])
    import onnx

    path = Path(path)
    if not path.is_file():
        raise GraphFileError(path, f"no ONNX graph at {path}")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: not ONNX, or cut short
        raise GraphFileError(path, f"{path} is not a readable ONNX graph (damaged or not ONNX: "
                                   f"{type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in METADATA_KEYS if k not in meta and k not in _ADDED_LATER]
    if missing:
        raise GraphFileError(path, f"{path} was not written by flashdepth (metadata {', '.join(missing)} missing)")
    graph = _parse_metadata(path, meta)
    _check_structure(path, proto, graph)
    return graph


def _bad(path: Path, key: str, problem: str) -> GraphFileError:
    return GraphFileError(path, f"{path}: metadata {key} {problem}")


def _json(path: Path, meta: dict[str, str], key: str):
    try:
        return json.loads(meta[key])
    except ValueError:
        raise _bad(path, key, f"is not JSON ({_short(meta[key])})") from None


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _parse_metadata(path: Path, meta: dict[str, str]) -> ExportedGraph:
    try:
        config = from_dict(ModelConfig, _json(path, meta, "flashdepth.config"), "flashdepth.config.").validate()
    except ConfigError as e:
        raise _bad(path, "flashdepth.config", f"is not a valid model configuration ({e})") from None
    except (TypeError, ValueError) as e:
        raise _bad(path, "flashdepth.config", f"is not a valid model configuration ({type(e).__name__}: {e})") from None
    patch = config.vit.patch_size
    if meta["flashdepth.patch_size"] != str(patch):
        raise _bad(path, "flashdepth.patch_size", f"is {_short(meta['flashdepth.patch_size'])} but the configuration's "
                                                  f"patch is {patch}")
    size = _json(path, meta, "flashdepth.input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v, 1) and v % patch == 0 for v in size)):
        raise _bad(path, "flashdepth.input_size", f"is {_short(meta['flashdepth.input_size'])}, not [H, W] with "
                                                  f"positive multiples of the {patch}-pixel patch")
    batch_text = meta["flashdepth.batch"]
    batch = None if batch_text == "dynamic" else int(batch_text) if batch_text.isdigit() else 0
    if batch == 0:
        raise _bad(path, "flashdepth.batch", f"is {_short(batch_text)}, not a positive whole number or \"dynamic\"")
    shapes = _json(path, meta, "flashdepth.state_shapes")
    expected = [list(s) for s in state_shapes(config, batch or 0, (size[0], size[1]))]
    if shapes != expected:
        raise _bad(path, "flashdepth.state_shapes", f"is {_short(meta['flashdepth.state_shapes'], 60)} but the "
                                                    f"configuration's state is {json.dumps(expected)}")
    for key, values in (("flashdepth.input_mean", config.input.mean), ("flashdepth.input_std", config.input.std)):
        if _json(path, meta, key) != list(values):
            raise _bad(path, key, f"is {_short(meta[key])} but the configuration's is {list(values)}")
    if meta["flashdepth.precision"] not in PRECISIONS:
        raise _bad(path, "flashdepth.precision", f"is {_short(meta['flashdepth.precision'])}, not one of "
                                                 f"{', '.join(PRECISIONS)}")
    return ExportedGraph(path, config, (size[0], size[1]), batch, tuple(tuple(s) for s in shapes),
                         meta["flashdepth.precision"])


def _declared(value_info) -> Optional[list]:
    """The declared dims of a graph input or output: ints, or None where a dim is symbolic."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def _check_structure(path: Path, proto, graph: ExportedGraph) -> None:
    """The graph's inputs, outputs and external data agree with its metadata."""
    import onnx

    initialised = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initialised]
    names = ([i.name for i in inputs], [o.name for o in proto.graph.output])
    if names != (graph.input_names, graph.output_names):
        raise GraphFileError(path, f"{path}'s inputs {names[0]} and outputs {names[1]} are not those its metadata "
                                   f"describes ({graph.input_names} -> {graph.output_names}): the metadata belongs to "
                                   "another graph")
    b = graph.batch
    h, w = graph.size
    wanted = {"frame": [b, 3, h, w], "depth": [b, h, w]}
    wanted.update({f"state_{d}_{i}": [b, *s[1:]] for i, s in enumerate(graph.state_shapes) for d in ("in", "out")})
    for value in [*inputs, *proto.graph.output]:
        dims, want = _declared(value), wanted[value.name]
        if dims is None or len(dims) != len(want) or any(d is not None and x is not None and d != x
                                                          for d, x in zip(dims, want)):
            raise GraphFileError(path, f"{path}: {value.name} is declared {dims} but the metadata says "
                                       f"{[x if x is not None else 'B' for x in want]}: the metadata does not "
                                       "describe this graph")
    folder = path.parent.resolve()
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise GraphFileError(path, f"{path}: tensor {tensor.name} keeps its data at {_short(location, 60)}, outside "
                                       "the graph's folder; a graph's external data must sit beside it")
        if not target.is_file():
            raise GraphFileError(path, f"{path}: tensor {tensor.name}'s external data {location} is missing")


def _tensors(graph):
    """Every tensor a graph holds: initialisers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)
