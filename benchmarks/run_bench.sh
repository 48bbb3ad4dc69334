#!/usr/bin/env bash
# Full CPU benchmark of dtp_stereo: teacher vs students side by side, conv-bound check, node
# overhead. Run from the repository root on an otherwise idle machine:
#   benchmarks/run_bench.sh [THREADS]            (default 2)
# Writes docs/results/{bench-cpu.json,bench-cpu.md,conv-bound-cpu.json,node-overhead-cpu.json}.
# Optional: PRUNED=path/to/pruned.pt adds the pruned student; SIZES=... overrides the sizes.
set -euo pipefail
THREADS="${1:-2}"
PY="${PY:-.venv/bin/python}"
SIZES="${SIZES:-256x512,384x1248}"
MODELS="psmnet,dtpnet,dtpnet_fast"
if [ -n "${PRUNED:-}" ]; then MODELS="$MODELS,dtpnet_pruned=$PRUNED"; fi
mkdir -p docs/results
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

"$PY" -m dtp_stereo.cli.main bench --models "$MODELS" --sizes "$SIZES" \
    --backends torch,onnxruntime,torch-cuda,tensorrt --threads "$THREADS" \
    --repeats 20 --model-repeats psmnet=3 --warmup 2 --time-cap 600 \
    --output docs/results/bench-cpu.json --markdown docs/results/bench-cpu.md

"$PY" benchmarks/conv_bound.py --sizes "$SIZES" --heads full,fast --threads "$THREADS" \
    --repeats 10 --output docs/results/conv-bound-cpu.json

"$PY" benchmarks/node_overhead.py --model dtpnet --backend torch --size 256x512 \
    --threads "$THREADS" --repeats 30 --output docs/results/node-overhead-cpu.json
