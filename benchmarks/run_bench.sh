#!/usr/bin/env bash
# Every performance figure of docs/results.md ("Performance"), in the order they were produced.
# Run from the repository root on an otherwise idle machine (run here in parts, not timed end to end):
#   bash benchmarks/run_bench.sh [THREADS]            (default 2)
# Writes docs/results/{bench-cpu,bench-cpu-compiled,speed-ratio-*,bench-torch-options-*,
# bench-ort-*,bench-threads-*,op-timings,conv-bound-cpu,node-overhead-cpu*,precision-accuracy,quantize-int8}.json (+ .md tables).
# SIZES=... overrides the sizes of the main table; SHIPPED=... the shipped checkpoint.
set -euo pipefail
THREADS="${1:-2}"
PY="${PY:-.venv/bin/python}"
SIZES="${SIZES:-256x512,384x1248}"
SHIPPED="${SHIPPED:-models/dtpnet_pruned.pt}"
PRUNED="dtpnet_pruned=$SHIPPED,dtpnet_pruned_fast=$SHIPPED:head=fast"
R=docs/results
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/dtp_bench.XXXXXX")  # private, unique; removed on exit
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$R"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
bench() { "$PY" -m dtp_stereo.cli.main bench --threads "$THREADS" "$@"; }

# 1. The side-by-side table: teacher, students (both heads), shipped student, every backend.
bench --models "psmnet,dtpnet,dtpnet_fast,$PRUNED" --sizes "$SIZES" \
    --backends torch,onnxruntime,torch-cuda,tensorrt --repeats 10 --model-repeats psmnet=3 \
    --warmup 1 --time-cap 200 --output $R/bench-cpu.json --markdown $R/bench-cpu.md

# 2. The same comparison with torch.compile + channels-last applied to every model.
bench --models "psmnet,dtpnet_fast,dtpnet,$PRUNED" --sizes 256x512 --backends torch \
    --repeats 10 --model-repeats psmnet=3 --warmup 2 --time-cap 400 --channels-last --compile \
    --output $R/bench-cpu-compiled.json --markdown $R/bench-cpu-compiled.md

# 2b. The ratio targets, teacher and students interleaved in rounds in one process (robust to a
#     shared machine's drifts, unlike ratios of configurations measured minutes apart).
STUDENTS="dtpnet_fast,dtpnet_pruned_fast=$SHIPPED:head=fast"
"$PY" benchmarks/speed_ratio.py --reference psmnet --models "$STUDENTS" --size 256x512 \
    --backend torch --rounds 5 --output $R/speed-ratio-torch.json
"$PY" benchmarks/speed_ratio.py --reference psmnet --models "$STUDENTS" --size 256x512 \
    --backend torch --rounds 5 --channels-last --compile \
    --output $R/speed-ratio-torch-compiled.json
"$PY" benchmarks/speed_ratio.py --reference psmnet --models "$STUDENTS" --size 256x512 \
    --backend onnxruntime --rounds 5 --output $R/speed-ratio-onnxruntime.json

# 3. Torch options one at a time (fast-head student, 256x512).
for opts in "default:" "no-fuse-bn:--no-fuse-bn" "channels-last:--channels-last" \
            "compile:--compile" "channels-last-compile:--channels-last --compile"; do
  name=${opts%%:*}; flags=${opts#*:}
  # shellcheck disable=SC2086
  bench --models dtpnet_fast --sizes 256x512 --backends torch --repeats 10 --warmup 2 \
      --reference dtpnet_fast $flags --output $R/bench-torch-options-$name.json
done

# 4. ONNX Runtime graph optimisation levels (fast-head students, 256x512).
for level in disable basic extended all; do
  bench --models "dtpnet_fast,dtpnet_pruned_fast=$SHIPPED:head=fast" --sizes 256x512 \
      --backends onnxruntime --repeats 10 --warmup 2 --reference dtpnet_fast \
      --ort-optimization $level --output $R/bench-ort-$level.json
done

# 4a. Thread scaling (1 vs 2 intra-op threads), fast-head students, torch and ONNX Runtime.
for t in 1 2; do
  "$PY" -m dtp_stereo.cli.main bench --models "$STUDENTS" --sizes 256x512 \
      --backends torch,onnxruntime --threads $t --repeats 10 --warmup 2 --reference dtpnet_fast \
      --output $R/bench-threads-$t.json
done

# 4a'. ONNX Runtime's per-operator time, with the plane softmax as an ONNX Softmax and written out.
"$PY" benchmarks/ort_profile.py --checkpoint "$SHIPPED" --size 256x512 --plain-softmax \
    --threads "$THREADS" --output $R/ort-profile-plain-softmax.json
"$PY" benchmarks/ort_profile.py --checkpoint "$SHIPPED" --size 256x512 \
    --threads "$THREADS" --output $R/ort-profile-explicit-softmax.json

# 4b. The rewritten non-convolution operators against the plain formulas.
"$PY" benchmarks/op_timings.py --threads "$THREADS" --output $R/op-timings.json

# 5. Convolution-bound check (interleaved rounds).
"$PY" benchmarks/conv_bound.py --sizes "$SIZES" --heads full,fast \
    --checkpoint "dtpnet_pruned=$SHIPPED" --checkpoint "dtpnet_pruned_fast=$SHIPPED:head=fast" \
    --threads "$THREADS" --repeats 15 --output $R/conv-bound-cpu.json

# 6. Node overhead: the same backend bare and inside the node, both heads.
"$PY" benchmarks/node_overhead.py --model dtpnet_fast --backend torch --size 256x512 \
    --threads "$THREADS" --repeats 30 --output $R/node-overhead-cpu-fast.json
"$PY" benchmarks/node_overhead.py --model dtpnet --backend torch --size 256x512 \
    --threads "$THREADS" --repeats 30 --output $R/node-overhead-cpu.json

# 7. Reduced precision: fp16/bf16 accuracy (CPU-emulated) and INT8 (ONNX Runtime, static QDQ).
"$PY" benchmarks/precision_accuracy.py --checkpoint "$SHIPPED" \
    --output $R/precision-accuracy.json
"$PY" -m training.cli quantize --checkpoint "$SHIPPED" --output "$SCRATCH"/dtp_int8.onnx \
    --fp16-output "$SCRATCH"/dtp_fp16.onnx \
    --size 128x256 --calib-samples 16 --compare 20 --threads "$THREADS" \
    --json $R/quantize-int8.json
# ... and the same for the runtime default model
"$PY" benchmarks/precision_accuracy.py --checkpoint models/dtpnet_pruned_fast.pt --heads fast \
    --output $R/precision-accuracy-default.json
"$PY" -m training.cli quantize --checkpoint models/dtpnet_pruned_fast.pt \
    --output "$SCRATCH"/dtp_fast_int8.onnx --fp16-output "$SCRATCH"/dtp_fast_fp16.onnx --size 128x256 \
    --calib-samples 16 --compare 20 --threads "$THREADS" --json $R/quantize-int8-default.json
