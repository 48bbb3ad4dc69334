#!/usr/bin/env bash
# Run (or continue) one stage of the real-scene recipe so that nothing trained is lost.
#   bash scripts/train_real.sh STAGE [extra dtp-train args]   train, resuming where it stopped
#   bash scripts/train_real.sh STAGE --save                   copy the run's state to the repo
# s1 and s2 are the student's training stages (configs/real/student_<stage>.yaml, pipeline stage
# "distill"); pruned_s2 continues the pruned default at 256x512 (configs/real/pruned_s2.yaml,
# pipeline stage "distill"); pruned_s3 continues pruned_s2's weights with near and far scenes
# (configs/real/pruned_s3.yaml, pipeline stage "distill"); pruned_s4 continues pruned_s3 with
# a second, 128x256 validation split (configs/real/pruned_s4.yaml, "distill"); pruned_s5
# continues pruned_s4 with a new scene seed (configs/real/pruned_s5.yaml, "distill"); pruned_s6
# continues pruned_s5 at a lower learning rate (configs/real/pruned_s6.yaml, "distill"); pruned_s7
# distils the stage-2 teacher into pruned_s6 (configs/real/pruned_s7.yaml, "distill"); pruned_s8
# continues pruned_s6 with thin objects (configs/real/pruned_s8.yaml, "distill"); pruned_s9 grows
# pruned_s6 by the edge refinement on those scenes (configs/real/pruned_s9.yaml, "distill");
# pruned_s10 grows pruned_s8 by the convex upsampling (configs/real/pruned_s10.yaml, "distill");
# pruned_s11 continues pruned_s10 on scenes with larger disparities (configs/real/pruned_s11.yaml,
# "distill"); pruned_s13 continues pruned_s11 with 48 logit planes (configs/real/pruned_s13.yaml,
# "distill"); pruned_s14 grows pruned_s13 by the upsampling's offset (configs/real/pruned_s14.yaml,
# "distill"); pruned_s15 grows pruned_s11 by that offset (configs/real/pruned_s15.yaml, "distill");
# pruned_s16 continues pruned_s15 at half its rate (configs/real/pruned_s16.yaml, "distill");
# pruned_s17 continues pruned_s11 on the mix of procedural scenes and single-photo pairs
# (configs/real/pruned_s17.yaml, "distill"; needs data/textures); teacher_s2
# continues the wide teacher at 256x512 (configs/real/teacher_s2.yaml, "distill") and teacher_s3
# continues teacher_s2 for longer (configs/real/teacher_s3.yaml, "distill"); teacher
# trains the wide 2D teacher of configs/real/dtp_real.yaml (pipeline stage "teacher", state in
# runs/dtp_real, kept in models/stages/dtp_real/teacher); prune is
# distill-then-prune of the stage-1 student (configs/real/prune_s1.yaml,
# pipeline stages prune, finetune, eval, export; a pipeline stage whose result is kept is skipped);
# prune_s12 is the same for stage 11, to widths that ONNX Runtime runs faster
# (configs/real/prune_s12.yaml, the same pipeline stages);
# claims-<row> is one row of the one-budget comparison (configs/real/claims.yaml plus the row's
# overrides below; rows gt, l1, kl, both, pruned, photo, single, mix, mix50, scratch,
# norm, corr32), kept in
# models/stages/claims/<row>.
# The state lives in runs/real_<stage>/<pipeline stage> (git-ignored) while it trains; its
# last.pt / best.pt / metrics.csv / summary.json / results.json / export.json are copied to
# models/stages/real_<stage>/ (committed; the "distill" stage directly, the others in
# sub-folders) after it stops and on --save, and copied back before a resume on a fresh clone
# (last.pt only while the stage is unfinished: a finished stage keeps best.pt).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stage=${1:?usage: train_real.sh s1|s2|pruned_s2|pruned_s3|pruned_s4|pruned_s5|pruned_s6|pruned_s7|pruned_s8|pruned_s9|pruned_s10|pruned_s11|pruned_s13|pruned_s14|pruned_s15|pruned_s16|pruned_s17|teacher_s2|teacher_s3|teacher|prune|prune_s12|claims-ROW [--save | dtp-train args]}
shift
runs=$root/runs/real_$stage
keep=$root/models/stages/real_$stage
row_args=()  # the claims row's config overrides
l1_point='[{name: logits, teacher_tap: logits_quarter, student_tap: logits_quarter, loss: logits_l1, weight: 1.0}]'
mix_sources='[{name: synthetic, weight: 0.7}, {name: single_image, weight: 0.3}]'
mix50_sources='[{name: synthetic, weight: 0.5}, {name: single_image, weight: 0.5}]'
kl_point='[{name: logits, teacher_tap: logits_quarter, student_tap: logits_quarter, loss: kl, weight: 1.0}]'
case $stage in
  s1|s2) cfg=$root/configs/real/student_$stage.yaml; steps="distill" ;;
  pruned_s2|pruned_s3|pruned_s4|pruned_s5|pruned_s6|pruned_s7|pruned_s8|pruned_s9|pruned_s10|pruned_s11|pruned_s13|pruned_s14|pruned_s15|pruned_s16|pruned_s17|teacher_s2|teacher_s3) cfg=$root/configs/real/$stage.yaml; steps="distill" ;;
  teacher)
    cfg=$root/configs/real/dtp_real.yaml; steps="teacher"
    runs=$root/runs/dtp_real
    keep=$root/models/stages/dtp_real ;;
  prune) cfg=$root/configs/real/prune_s1.yaml; steps="prune finetune eval export" ;;
  prune_s12) cfg=$root/configs/real/prune_s12.yaml; steps="prune finetune eval export" ;;
  claims-*)
    row=${stage#claims-}
    cfg=$root/configs/real/claims.yaml; steps="distill eval"
    runs=$root/runs/claims_$row
    keep=$root/models/stages/claims/$row
    case $row in
      gt) ;;
      l1) row_args=(distill.loss.supervision=teacher "distill.loss.points=$l1_point") ;;
      kl) row_args=(distill.loss.supervision=teacher "distill.loss.points=$kl_point") ;;
      both) row_args=(distill.loss.supervision=both "distill.loss.points=$l1_point") ;;
      pruned) steps="finetune eval" ;;
      photo) row_args=(data.train.name=photo_layers data.train.textures=data/textures) ;;
      single) row_args=(data.train.name=single_image data.train.textures=data/textures) ;;
      mix) row_args=(data.train.name=mix data.train.textures=data/textures "data.train.sources=$mix_sources") ;;
      mix50) row_args=(data.train.name=mix data.train.textures=data/textures "data.train.sources=$mix50_sources") ;;
      scratch) row_args=(student_model.checkpoint=null) ;;
      norm) row_args=(student_model.checkpoint=null student_model.config.correlation_norm=true) ;;
      corr32) row_args=(student_model.checkpoint=null student_model.config.correlation=32) ;;
      *) echo "train_real.sh: unknown claims row '$row' (gt, l1, kl, both, pruned, photo," \
           "single, mix, mix50, scratch, norm, corr32)" >&2; exit 2 ;;
    esac
    row_args=(--run-dir "$runs" ${row_args[@]+"${row_args[@]}"}) ;;
  *) echo "train_real.sh: unknown stage '$stage' (s1, s2, pruned_s2, pruned_s3, pruned_s4, pruned_s5, pruned_s6, pruned_s7, pruned_s8, pruned_s9, pruned_s10, pruned_s11, pruned_s13, pruned_s14, pruned_s15, pruned_s16, pruned_s17, teacher_s2, teacher_s3, teacher, prune, prune_s12 or claims-<row>)" >&2; exit 2 ;;
esac
[ -f "$cfg" ] || { echo "train_real.sh: no config $cfg" >&2; exit 2; }
files="last.pt best.pt metrics.csv summary.json results.json export.json"
kept() {  # the committed folder of pipeline stage $1
  if [ "$1" = distill ]; then echo "$keep"; else echo "$keep/$1"; fi
}
done_marker() {  # the file whose presence means pipeline stage $1 finished
  case $1 in
    teacher|distill|finetune) echo summary.json ;;
    prune) echo best.pt ;;
    eval) echo results.json ;;
    export) echo export.json ;;
  esac
}
save() {
  for s in $steps; do
    local run=$runs/$s dst
    dst=$(kept "$s")
    [ -n "$(ls -A "$run" 2>/dev/null)" ] || continue
    mkdir -p "$dst"
    for f in $files; do
      if [ -f "$run/$f" ]; then cp "$run/$f" "$dst/$f.tmp" && mv "$dst/$f.tmp" "$dst/$f"; fi
    done
    # a finished training stage (summary.json written) needs no resume state: keep best.pt only
    if [ -f "$run/summary.json" ]; then rm -f "$dst/last.pt"; fi
    echo "[train_real] saved $run -> $dst" >&2
  done
}
if [ "${1:-}" = "--save" ]; then save; exit 0; fi
todo=""
for s in $steps; do
  run=$runs/$s
  src=$(kept "$s")
  mkdir -p "$run"
  if [ ! -f "$run/last.pt" ] && [ ! -f "$run/$(done_marker "$s")" ] && [ -d "$src" ]; then
    for f in $files; do if [ -f "$src/$f" ]; then cp "$src/$f" "$run/$f"; fi; done
    echo "[train_real] restored $src -> $run" >&2
  fi
  # re-run only what has not finished (s1/s2's single stage always runs: --resume continues it)
  # (eval and export are redone when a stage before them still trains)
  if [ "$steps" != distill ] && [ -f "$run/$(done_marker "$s")" ]; then
    case $s in eval|export) [ -n "$todo" ] || continue ;; *) continue ;; esac
  fi
  todo="${todo:+$todo,}$s"
done
bash "$root/scripts/setup_env.sh"
cd "$root"
status=0
if [ -n "$todo" ]; then
  OMP_NUM_THREADS=2 .venv/bin/dtp-train --config "$cfg" --stages "$todo" --resume --quiet \
    ${row_args[@]+"${row_args[@]}"} "$@" || status=$?
fi
save
exit $status
