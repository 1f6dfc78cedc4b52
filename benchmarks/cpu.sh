#!/usr/bin/env bash
# The CPU tables of docs/performance.md in one run (about 10 minutes on 2 cores), written as JSON.
#
#   bash benchmarks/cpu.sh [OUTDIR] [VIDEO...]     # default benchmarks/results/cpu-<date>
#
# Random weights in the published layouts (speed does not depend on them). Every figure is a
# side-by-side measurement in one process: the fast paths against the references (bench), the
# backends against PyTorch (bench), int8 against fp32 (int8.py). The comparison with the official
# implementation needs its checkout: python benchmarks/official.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/cpu-$(date +%Y%m%d)}"
shift || true
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
bench() { python -m flashdepth_cli bench --device cpu "$@"; }

bench --model flashdepth-s --size 518x518 --frames 10 --backend torch onnxruntime openvino onnxruntime-int8 \
      --json "$OUT/s-518.json"
bench --model flashdepth-l --size 280x504 --frames 6 --json "$OUT/l-280x504.json"
bench --model flashdepth --size 532x952 --frames 3 --warmup 1 --json "$OUT/full-532x952.json"
python benchmarks/breakdown.py --model flashdepth-s --size 518x518 --frames 3 --json "$OUT/profile-s-518.json"
if [ "$#" -gt 0 ]; then
  python benchmarks/int8.py "$@" --model flashdepth-s --resolution 280 --frames 24 --json "$OUT/int8-s.json"
fi
echo "results in $OUT"
