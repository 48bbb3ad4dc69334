#!/usr/bin/env bash
# Measure the distill-then-prune student (configs/real/prune_s1.yaml) after
# `bash scripts/train_real.sh prune` stopped (finished, or cut: its best.pt is then the best on the
# synthetic validation split so far): synthetic test split (eval stage), real pairs with SGBM in
# the same run, 640x480 speed against SGBM interleaved. Writes docs/results/real-prune-*.json.
#   bash scripts/finish_prune.sh [CHECKPOINT]   (default: the fine-tune stage's best.pt)
# Real pairs are evaluation data only: they never choose a checkpoint.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=.venv/bin
ckpt=${1:-runs/real_prune/finetune/best.pt}
[ -f "$ckpt" ] || ckpt=models/stages/real_prune/finetune/best.pt
[ -f "$ckpt" ] || { echo "finish_prune.sh: no fine-tuned checkpoint (run train_real.sh prune)" >&2; exit 2; }
bash scripts/setup_env.sh
out=docs/results
if [ ! -f runs/real_prune/eval/results.json ] || [ "$ckpt" -nt runs/real_prune/eval/results.json ]; then
  OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/prune_s1.yaml --stages eval --quiet
fi
cp runs/real_prune/eval/results.json "$out/real-prune-eval.json"
bash scripts/eval_real.sh "$out/real-prune" "$ckpt" real_s1=models/dtpnet_real.pt
$bin/python benchmarks/real_table.py "$out"/real-prune-x*.json --output "$out/real-prune-targets.json"
$bin/python benchmarks/sgbm_speed.py --model pruned="$ckpt" --size 480x640 --threads 2 \
  --rounds 20 --output "$out/sgbm-speed-640x480-pruned.json"
