#!/usr/bin/env bash
# Run (or continue) one stage of the real-scene recipe so that nothing trained is lost.
#   bash scripts/train_real.sh s1|s2 [extra dtp-train args]   train, resuming where it stopped
#   bash scripts/train_real.sh s1|s2 --save                   copy the run's state to the repo
# The stage's state lives in runs/real_<stage>/distill (git-ignored) while it trains; its
# last.pt / best.pt / metrics.csv / summary.json are copied to models/stages/real_<stage>/
# (committed) after it stops and on --save, and copied back before a resume on a fresh clone
# (last.pt only while the stage is unfinished: a finished stage keeps best.pt).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stage=${1:?usage: train_real.sh s1|s2 [--save | dtp-train args]}
shift
cfg=$root/configs/real/student_$stage.yaml
[ -f "$cfg" ] || { echo "train_real.sh: no config $cfg" >&2; exit 2; }
run=$root/runs/real_$stage/distill
keep=$root/models/stages/real_$stage
files="last.pt best.pt metrics.csv summary.json"
save() {
  mkdir -p "$keep"
  for f in $files; do
    if [ -f "$run/$f" ]; then cp "$run/$f" "$keep/$f.tmp" && mv "$keep/$f.tmp" "$keep/$f"; fi
  done
  # a finished stage (summary.json written) needs no resume state: keep best.pt only
  if [ -f "$run/summary.json" ]; then rm -f "$keep/last.pt"; fi
  echo "[train_real] saved $run -> $keep" >&2
}
if [ "${1:-}" = "--save" ]; then save; exit 0; fi
mkdir -p "$run"
if [ ! -f "$run/last.pt" ] && [ -f "$keep/last.pt" ]; then
  for f in $files; do [ -f "$keep/$f" ] && cp "$keep/$f" "$run/$f"; done
  echo "[train_real] restored $keep -> $run" >&2
fi
bash "$root/scripts/setup_env.sh"
cd "$root"
status=0
OMP_NUM_THREADS=2 .venv/bin/dtp-train --config "$cfg" --stages distill --resume --quiet "$@" \
  || status=$?
save
exit $status
