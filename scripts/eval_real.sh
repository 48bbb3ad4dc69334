#!/usr/bin/env bash
# Evaluate checkpoints on every real pair with ground truth found here, with OpenCV SGBM (raw and
# hole-filled, same disparity range) in the same run, at several scales.
#   bash scripts/eval_real.sh OUT_PREFIX CKPT [LABEL=CKPT ...]
# (env: LABEL names CKPT's rows, default student; SCALES, default "0.25 0.5 1"; THREADS, default 2)
# Every SGBM row is in the JSON (comparison.sgbm_raw / sgbm_filled and *_<range>).
# writes OUT_PREFIX-x<scale>.json and OUT_PREFIX-x<scale>.png for scales 0.25, 0.5 and 1 (of the
# stored sizes: Aloe 1282x1110, Motorcycle 741x500, the Middlebury 2014 quarter size).
# Real pairs are evaluation data only: never train on them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${1:?usage: eval_real.sh OUT_PREFIX CKPT [LABEL=CKPT ...]}
main=${2:?usage: eval_real.sh OUT_PREFIX CKPT [LABEL=CKPT ...]}
shift 2
bash "$root/scripts/setup_env.sh"
cd "$root"
py=.venv/bin/python
data=$root/data/real
if [ ! -f "$data/manifest.json" ]; then
  if [ ! -f /usr/share/doc/opencv-doc/examples/data/aloeGT.png ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q opencv-doc || true) >/dev/null 2>&1
  fi
  mkdir -p "$root/data/wheels"
  ls "$root"/data/wheels/scikit_image-*.whl >/dev/null 2>&1 || \
    "$py" -m pip download -q --no-deps "scikit-image==0.26.0" -d "$root/data/wheels" || true
  .venv/bin/dtp-stereo real-pairs --out "$data" --skimage "$root/data/wheels"
fi
also=()
for spec in "$@"; do also+=(--also "$spec"); done
# SGBM runs over the model's range (the comparison the targets name) and, as stronger references,
# over ranges that fit the scenes at that scale (Aloe's GT reaches 211 px at x1, Motorcycle's 60).
declare -A fitted=([0.25]="64" [0.5]="64 128" [1]="64 224")
for scale in ${SCALES:-0.25 0.5 1}; do
  ranges=()
  for r in ${fitted[$scale]:-}; do ranges+=(--sgbm-range "$r"); done
  .venv/bin/dtp-stereo eval --dataset middlebury2014 --root "$data" --split all \
    --checkpoint "$main" --label "${LABEL:-student}" "${also[@]}" --with-sgbm "${ranges[@]}" --scale "$scale" \
    --threads "${THREADS:-2}" --warmup 1 --figure "$prefix-x$scale.png" \
    --output "$prefix-x$scale.json"
done
