#!/usr/bin/env bash
# The whole GPU table in one run (sized for at most ~5 minutes on one GPU), written as JSON.
#
#   bash benchmarks/gpu.sh [OUTDIR]        # default benchmarks/results/gpu-<date>
#
# Needs a CUDA build of torch. Every case is timed side by side with the reference paths of the
# same weights (frames interleaved); see docs/performance.md for how the figures are read.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/gpu-$(date +%Y%m%d)}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

# GPU-only tests first (mamba_ssm kernel parity, pinned staging, autocast, compile), so a broken
# fast path is known before its speed is.
python -m pytest -q -m gpu tests | tee "$OUT/gpu-tests.txt" || true

bench() { python -m flashdepth_cli bench --device cuda --frames 30 --warmup 5 "$@"; }
# The paper's headline: FlashDepth (Full) at 2044x1148 (24 FPS on an A100 in the paper).
bench --model flashdepth --size 1148x2044 --precision bf16 --backend torch compile cudagraphs --json "$OUT/full-2k.json"
# FlashDepth-L at 518x924 (paper: 30 FPS) and FlashDepth-S at 2K.
bench --model flashdepth-l --size 518x924 --precision bf16 --backend torch compile --json "$OUT/l-518.json"
bench --model flashdepth-s --size 1148x2044 --precision bf16 --backend torch compile --json "$OUT/s-2k.json"
# fp32 for reference (what the CPU figures use).
bench --model flashdepth-s --size 518x518 --precision fp32 --backend torch --json "$OUT/s-518-fp32.json"
# TensorRT from the exported graph (fp16 engine built by trtexec), when TensorRT is installed.
if command -v trtexec >/dev/null 2>&1; then
  python -m flashdepth_cli export onnx --model flashdepth-l --random-weights --size 518x924 -o "$OUT/l-518.onnx"
  trtexec --onnx="$OUT/l-518.onnx" --fp16 --warmUp=2000 --iterations=100 --useCudaGraph | tee "$OUT/trt-l-518-fp16.txt"
else
  echo "trtexec not found: TensorRT row skipped" | tee "$OUT/trt-skipped.txt"
fi
echo "results in $OUT"
