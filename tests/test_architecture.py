"""What docs/architecture.md promises: one-way layering, and a table row that reaches the command line."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The parts of the code and their layers (docs/architecture.md, "Layering"): a module may import from
# its own part or from a part of a lower layer. Modules in no part (new packages) are not checked
# until they are given one here.
PARTS = {
    "foundation": (0, ("flashdepth.errors", "flashdepth.utils", "flashdepth.config", "flashdepth.device",
                       "flashdepth.geometry")),
    "ops": (1, ("flashdepth.ops",)),
    "vis": (1, ("flashdepth.vis",)),  # colour maps: NumPy and matplotlib only
    "models": (2, ("flashdepth.models",)),
    "inference": (3, ("flashdepth.inference",)),  # the package's own docstring only
    "registry": (3, ("flashdepth.inference.registry", "flashdepth.inference.weights")),
    "preprocess": (3, ("flashdepth.inference.preprocess",)),
    "session": (4, ("flashdepth.inference.session",)),
    "modes": (3, ("flashdepth.inference.modes",)),  # the table of inference modes: torch-free, read by the CLI
    "windowed": (4.5, ("flashdepth.inference.windowed",)),  # windowed inference through a session
    "export": (3, ("flashdepth.export",)),
    "metric": (3.8, ("flashdepth.metric",)),  # aligning a stream to metres: fits only, below the session that opens it
    "backends": (3.5, ("flashdepth.inference.backends",)),  # above export (its graph rows), below session (which opens one)
    "io": (4, ("flashdepth.io",)),
    "data": (4, ("flashdepth.data",)),
    "metrics": (4, ("flashdepth.metrics",)),
    "apps": (5, ("flashdepth.apps",)),  # the package's own docstring only
    "pipeline": (5, ("flashdepth.apps.pipeline",)),
    "viewer": (5, ("flashdepth.viewer",)),
    "evaluate": (5, ("flashdepth.apps.evaluate",)),
    "bench": (5, ("flashdepth.apps.bench",)),
    "batch": (6, ("flashdepth.batch",)),
    "train": (6, ("flashdepth.train",)),  # validation uses the evaluation protocol (layer 5)
    "demo": (6, ("flashdepth.apps.demo",)),
    "cli": (7, ("flashdepth_cli",)),
}


def _part(module: str):
    # the longest matching prefix wins: a folder's own ``__init__`` is its own part, its modules theirs
    matches = [(len(p), part) for part, (_, prefixes) in PARTS.items() for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1] if matches else None


def _imports(path: Path, module: str) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + [node.module] if node.module else base)
            found |= {name} | {f"{name}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {n for n in found if n.split(".")[0] in ("flashdepth", "flashdepth_cli")}


def test_imports_follow_the_layering():
    checked, wrong = 0, []
    for path in sorted([*ROOT.glob("flashdepth/**/*.py"), *ROOT.glob("flashdepth_cli/**/*.py")]):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        source = _part(module)
        if source is None:
            if module != "flashdepth":  # every module has a part: a new package gets its layer here first
                wrong.append(f"{module} is in no part of PARTS: give its package a part and a layer")
            continue
        text = path.read_text()
        if source != "cli" and ("import argparse" in text or "torch.distributed" in text):
            wrong.append(f"{module}: argparse / torch.distributed belong to the command line")
        for target in _imports(path, module):
            part = _part(target)
            if part is None or target == "flashdepth":
                continue  # an unlisted module, or the package's lazy facade
            checked += 1
            if part != source and PARTS[part][0] >= PARTS[source][0]:
                wrong.append(f"{module} ({source}, layer {PARTS[source][0]}) imports {target} "
                             f"({part}, layer {PARTS[part][0]})")
    assert checked > 50
    assert not wrong, wrong


PROBE = r"""
import contextlib, io, json
from flashdepth.config import ModelConfig
from flashdepth.data.datasets import DATASETS, DatasetSpec
from flashdepth.io.sinks import OUTPUTS, OutputFormat
from flashdepth.metrics import METRICS, Metric
from flashdepth.inference import registry
OUTPUTS["probe-out"] = OutputFormat("probe-out", "probe.bin", "probe output row", lambda path, o: None)
DATASETS["probe-set"] = DatasetSpec("probe-set", "probe dataset row", lambda src, dst: {}, "test")
METRICS["probe_metric"] = Metric("probe_metric", "probe metric row", True, lambda ctx: None)
spec = registry.get_spec("flashdepth-s")
registry._MODELS["probe-model"] = registry.ModelSpec(spec.config.replace(name="probe-model"), spec.weights,
                                                     "probe model row")

from flashdepth.batch import ENGINES, Engine
ENGINES["probe-engine"] = Engine("probe-engine", "probe engine row", "local")

from flashdepth_cli.common import parse_save
from flashdepth_cli.main import _parser, main

def helped(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(list(argv))
    return out.getvalue()

parser = _parser()
print(json.dumps({
    "run_help": helped("run", "--help"), "convert_help": helped("convert", "--help"),
    "eval_help": helped("eval", "--help"), "models": helped("models"), "batch_help": helped("batch", "--help"),
    "save": parse_save("raw,probe-out"),
    "convert_choice": parser.parse_args(["convert", "probe-set", "a", "b"]).dataset,
    "model_choice": parser.parse_args(["run", "x", "-o", "y", "--model", "probe-model"]).model,
    "engine_choice": parser.parse_args(["batch", "x", "-o", "y", "--engine", "probe-engine"]).engine,
}))
"""


def test_a_new_table_row_reaches_the_command_line():
    """A row added to OUTPUTS, DATASETS, METRICS, ENGINES or the model table shows up in the command
    line's help and choices with no other change."""
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert "probe-out" in seen["run_help"] and "probe output row" in seen["run_help"]
    assert seen["save"] == ["raw", "probe-out"]
    assert "probe-set" in seen["convert_help"] and "probe dataset row" in seen["convert_help"]
    assert seen["convert_choice"] == "probe-set"
    assert "probe_metric" in seen["eval_help"] and "probe metric row" in seen["eval_help"]
    assert "probe-model" in seen["models"] and "probe-model" in seen["run_help"]
    assert seen["model_choice"] == "probe-model"
    assert "probe-engine" in seen["batch_help"] and "probe engine row" in seen["batch_help"]
    assert "probe-out" in seen["batch_help"] and seen["engine_choice"] == "probe-engine"
