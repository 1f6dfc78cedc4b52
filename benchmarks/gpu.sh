#!/usr/bin/env bash
# The whole GPU table in one call, within about 5 minutes on one H100, written as it is measured.
#
#   bash benchmarks/gpu.sh [OUTDIR]        # default benchmarks/results/gpu-<date>
#   FLASHDEPTH_MAMBA=1 bash benchmarks/gpu.sh   # also install mamba_ssm and run its kernel parity test
#
# Needs a CUDA build of torch. Every step runs whatever happened before it (no set -e): a failing
# step is listed in OUTDIR/summary.txt and makes the script exit 1 at the end, after every other
# figure was taken. Each bench case is appended to OUTDIR/records.jsonl as soon as it is measured.
# Cold compiles are few (torch.compile once, CUDA graphs once, in a call of its own: the riskiest).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/gpu-$(date +%Y%m%d)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
RECORDS="$OUT/records.jsonl"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1
FAILED=0

# step NAME SECONDS COMMAND...: run with a time limit, log to OUTDIR/NAME.log, record the outcome.
step() {
  local name="$1" limit="$2"; shift 2
  local start=$SECONDS
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    echo "ok    $name ($((SECONDS - start)) s)" >> "$SUMMARY"
  else
    [ "$rc" -eq 124 ] && rc="timeout after ${limit} s"
    echo "FAIL  $name (exit $rc, $((SECONDS - start)) s; see $OUT/$name.log)" >> "$SUMMARY"
    FAILED=$((FAILED + 1))
  fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

# What the script needs: the package with its test extra (from the index when it can be reached;
# without a network the editable install of the checkout alone, whose dependencies must be there).
step install 120 bash -c "pip install -q --timeout 10 --retries 1 -e '.[test]' || pip install -q --no-deps --no-build-isolation -e ."
if [ "${FLASHDEPTH_MAMBA:-0}" = "1" ]; then
  step install-mamba 240 pip install -q --timeout 10 --retries 1 --no-build-isolation mamba-ssm
fi
step cuda 30 python -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

# GPU-only tests first (mamba_ssm kernel parity when installed, pinned staging, precisions,
# compiled streaming), so a broken fast path is known before its speed is; failures count.
step gpu-tests 150 python -m pytest -q -p no:cacheprovider -m gpu tests

# (an array, not a function: `timeout` runs programs only)
bench=(python -m flashdepth_cli bench --device cuda --frames 20 --warmup 3 --jsonl "$RECORDS")
# The paper's headline: FlashDepth (Full) at 2044x1148 (24 FPS on an A100 in the paper); the
# reference paths (2K attention scores) are timed on the smaller cases only.
step full-2k 150 "${bench[@]}" --model flashdepth --size 1148x2044 --precision bf16 --backend torch compile --no-reference
step full-2k-cudagraphs 120 "${bench[@]}" --model flashdepth --size 1148x2044 --precision bf16 --backend cudagraphs --no-reference
# FlashDepth-L at 518x924 (paper: 30 FPS) and FlashDepth-S at 2K, eager.
step l-518 90 "${bench[@]}" --model flashdepth-l --size 518x924 --precision bf16 --backend torch
step s-2k 90 "${bench[@]}" --model flashdepth-s --size 1148x2044 --precision bf16 --backend torch --no-reference
# fp32 (IEEE) and tf32 against the references, as the CPU figures are taken.
step s-518-fp32 90 "${bench[@]}" --model flashdepth-s --size 518x518 --precision fp32 tf32 --backend torch
# The peers side by side at one size, in one process: FlashDepth S/L/Full, Video Depth Anything S/L
# streaming and windowed (32-frame windows: per new frame, and the first depth after a window), and
# Depth Anything V2 S/L (models without a windowed mode are skipped there).
step peers 150 "${bench[@]}" --model flashdepth-s flashdepth-l flashdepth video-depth-anything-small video-depth-anything-large depth-anything-v2-small depth-anything-v2-large --size 518x924 --precision bf16 --backend torch --mode streaming windowed --no-reference
# TensorRT from the exported graph (fp16 engine built by trtexec), when TensorRT is installed.
if command -v trtexec >/dev/null 2>&1; then
  step export-l-518 120 python -m flashdepth_cli export onnx --model flashdepth-l --random-weights --size 518x924 -o "$OUT/l-518.onnx"
  step trt-l-518-fp16 120 trtexec --onnx="$OUT/l-518.onnx" --fp16 --warmUp=2000 --iterations=100 --useCudaGraph
else
  echo "skip  trt (trtexec not found)" >> "$SUMMARY"
fi

python - "$RECORDS" <<'PY' | tee "$OUT/table.md"
import json, sys
from flashdepth.apps.bench import summary_header, summary_row
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except FileNotFoundError:
    rows = []
print(summary_header())
for r in rows:
    print(summary_row(r))
PY
echo
echo "summary ($OUT/summary.txt):"
cat "$SUMMARY"
echo "results in $OUT"
[ "$FAILED" -eq 0 ] || { echo "$FAILED step(s) failed"; exit 1; }
