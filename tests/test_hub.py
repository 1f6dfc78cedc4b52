"""Downloading the published weights by name, against a fake hub on loopback, and offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import flashdepth

from conftest import randomize
from fakehub import FakeHub

HERE = Path(__file__).parent


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(HERE)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300)


def test_load_by_name_downloads_into_the_hub_cache(tmp_path):
    model = randomize(flashdepth.create_model("depth-anything-v2-small"), seed=3)
    weights = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(model.state_dict(), weights)
    x = torch.randn(1, 3, 70, 84, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(x)[0], tmp_path / "expected.pt")
    code = f"""
import torch, flashdepth, json
m = flashdepth.load_model("depth-anything-v2-small")
x = torch.load({str(tmp_path / 'x.pt')!r})
with torch.no_grad():
    print(json.dumps({{"equal": bool(torch.equal(m(x)[0], torch.load({str(tmp_path / 'expected.pt')!r}))),
                      "name": m.config.name}}))
"""
    with FakeHub({"depth-anything/Depth-Anything-V2-Small/depth_anything_v2_vits.pth": weights}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = _run(code, env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"equal": True, "name": "depth-anything-v2-small"}
        assert any("depth_anything_v2_vits.pth" in r for r in hub.requests)
        cached = list((tmp_path / "hf").rglob("depth_anything_v2_vits.pth"))
        assert cached, "the file should land in the hub cache"
        # Second time: offline, from the cache, no request.
        before = len(hub.requests)
        again = _run(code, {**env, "HF_HUB_OFFLINE": "1"})
        assert again.returncode == 0, again.stderr
        assert len(hub.requests) == before


def test_offline_without_cache_says_what_to_download(tmp_path, monkeypatch):
    code = """
import flashdepth
try:
    flashdepth.load_model("flashdepth-s")
except flashdepth.WeightsNotFoundError as e:
    print("ERROR:" + str(e))
"""
    result = _run(code, {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    line = [l for l in result.stdout.splitlines() if l.startswith("ERROR:")][0]
    assert "https://huggingface.co/Eyeline-Research/FlashDepth/resolve/main/flashdepth-s/iter_14001.pth" in line
    assert "--checkpoint" in line and "hf download Eyeline-Research/FlashDepth flashdepth-s/iter_14001.pth" in line


def test_missing_file_on_the_hub_is_a_clear_error(tmp_path):
    with FakeHub({}) as hub:
        code = """
import flashdepth
try:
    flashdepth.load_model("flashdepth-l")
except flashdepth.WeightsNotFoundError as e:
    print("ERROR:" + str(e))
"""
        result = _run(code, {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    assert "ERROR:could not get flashdepth-l/iter_10001.pth" in result.stdout
