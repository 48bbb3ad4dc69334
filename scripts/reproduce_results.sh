#!/usr/bin/env bash
# Re-runs every experiment behind docs/results.md on a CPU (about 1.5 hours on 2 cores), then
# collects the numbers into docs/results/*.json. Each step is a plain command you can run alone.
# Pass LANES=2 to run the DTP and DSN chains side by side (one thread each).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup_env.sh
bin=.venv/bin
teacher=runs/dsn_cpu/teacher/best.pt   # the GwcNet teacher serves both the DTP and the DSN runs
kl_point='[{name: logits, teacher_tap: logits, student_tap: logits, loss: kl, weight: 1.0}]'
dsn_logits_points='[{name: soft, teacher_tap: logits, student_tap: logits, loss: kl, weight: 0.2}, {name: tpw, teacher_tap: disparity, student_tap: disparity, loss: smooth_l1, weight: 0.1}]'

# The teacher: a narrow GwcNet trained on ground truth (dsn_cpu.yaml's teacher stage).
$bin/dtp-train --config configs/dsn_cpu.yaml --stages teacher
# Negative results kept for the record: a narrow PSMNet teacher on the same data (stopped at step
# 450 of 700 to free the CPU once its validation EPE had stalled), and DTPnet without correlation
# planes (the paper's pure channel-to-disparity module) for 450 steps.
$bin/dtp-train --config configs/psmnet_teacher_cpu.yaml --run-dir runs/psmnet_teacher_attempt \
  --max-steps 450
$bin/dtp-train --config configs/psmnet_teacher_cpu.yaml --run-dir runs/psmnet_teacher_attempt \
  --stages eval
$bin/dtp-train --config configs/dtp_cpu.yaml --run-dir runs/dtp_c2d_attempt --stages distill,eval \
  teacher_model.checkpoint=$teacher student_model.config.correlation=0 \
  distill.optim.steps=450 distill.eval_every=75 eval.sgbm=false

dtp_chain() {
  # Claim 1/4: student distilled from the teacher only (L1 on disparities) -> prune 50 % -> finetune
  $bin/dtp-train --config configs/dtp_cpu.yaml
  # Claim 1: the same student trained on ground truth alone, and on GT + teacher
  $bin/dtp-train --config configs/dtp_cpu.yaml --run-dir runs/dtp_gt --stages distill,eval \
    teacher_model.checkpoint=$teacher distill.loss.supervision=gt 'distill.loss.points=[]'
  $bin/dtp-train --config configs/dtp_cpu.yaml --run-dir runs/dtp_both --stages distill,eval \
    teacher_model.checkpoint=$teacher distill.loss.supervision=both
  # Claim 2: KL between softened logit distributions (T 1 -> 4) instead of L1
  $bin/dtp-train --config configs/dtp_cpu.yaml --run-dir runs/dtp_kl --stages distill,eval \
    teacher_model.checkpoint=$teacher "distill.loss.points=$kl_point" \
    distill.loss.temperature_start=1.0 distill.loss.temperature_end=4.0
  # The shipped student: the KL-distilled student (best of claim 2) pruned 50 % and fine-tuned
  # with the same KL loss; then copied to models/ by scripts/ship_model.py.
  $bin/dtp-train --config configs/dtp_cpu.yaml --run-dir runs/dtp_kl \
    --stages prune,finetune,eval,export teacher_model.checkpoint=$teacher \
    "distill.loss.points=$kl_point" "finetune.loss.points=$kl_point" \
    distill.loss.temperature_start=1.0 distill.loss.temperature_end=4.0 finetune.optim.steps=800
}

dsn_chain() {
  # Claim 3: backbone-aligned 3D student with feature + cost-volume + logits distillation ...
  $bin/dtp-train --config configs/dsn_cpu.yaml --stages distill,eval
  # ... against the same student with logits-level distillation only, and with ground truth only
  $bin/dtp-train --config configs/dsn_cpu.yaml --run-dir runs/dsn_logits --stages distill,eval \
    teacher_model.checkpoint=$teacher "distill.loss.points=$dsn_logits_points"
  $bin/dtp-train --config configs/dsn_cpu.yaml --run-dir runs/dsn_gt --stages distill,eval \
    teacher_model.checkpoint=$teacher distill.loss.supervision=gt 'distill.loss.points=[]'
}

if [ "${LANES:-1}" = 2 ]; then
  dtp_chain & dsn_chain & wait
else
  dtp_chain
  dsn_chain
fi

# The runtime default (models/dtpnet_pruned_fast.pt): the shipped student fine-tuned 800 more steps
# with the fast head on GT + teacher disparity; and the same recipe with the full head as control.
disp_point='[{name: disp, teacher_tap: disparity, student_tap: disparity, loss: smooth_l1, weight: 1.0}]'
for run in fast:fast full_ft:full; do
  $bin/dtp-train --config configs/dtp_cpu.yaml --run-dir runs/dtp_kl_${run%%:*} \
    --stages finetune,eval threads=2 teacher_model.checkpoint=$teacher \
    student_model.checkpoint=models/dtpnet_pruned.pt student_model.overrides.head=${run#*:} \
    "finetune.loss.points=$disp_point" finetune.loss.supervision=both \
    finetune.optim.steps=800 eval.sgbm=false
done
$bin/python scripts/ship_model.py runs/dtp_kl_fast/finetune/best.pt \
  --eval runs/dtp_kl_fast/eval/results.json --stage finetune --name dtpnet_pruned_fast
$bin/python benchmarks/head_accuracy.py --checkpoints shipped=models/dtpnet_pruned.pt \
  kl_unpruned=runs/dtp_kl/distill/best.pt finetuned_full=runs/dtp_kl_full_ft/finetune/best.pt \
  finetuned_fast=models/dtpnet_pruned_fast.pt

# Collect the tables of docs/results.md (claims 1-4) and the learning curves.
$bin/python benchmarks/collect_results.py --out docs/results/dtp_claims.json
$bin/dtp-train report runs/dtp_cpu runs/dtp_gt runs/dtp_both runs/dtp_kl --out docs/results/
# Claim 5: real data (Middlebury Aloe from Debian's opencv-doc) against OpenCV SGBM
$bin/python benchmarks/aloe_eval.py --scale 0.25 \
  --checkpoints teacher=$teacher gt_only=runs/dtp_gt/distill/best.pt \
  distilled_kl=runs/dtp_kl/distill/best.pt shipped_pruned=models/dtpnet_pruned.pt \
  shipped_pruned_fast=models/dtpnet_pruned_fast.pt gwc_student=runs/dsn_cpu/distill/best.pt \
  --output-json docs/results/aloe.json --figure docs/results/aloe.png
# Performance figures (about 40 minutes): see benchmarks/run_bench.sh

# ---- Real scenes (issue 9; hours, not minutes: stage 1 took 1.75 h on 2 cores) ----
# Stage 1: the runtime default models/dtpnet_real.pt (fresh scenes, full augmentation, D = 192).
bash scripts/train_real.sh s1
$bin/dtp-train --config configs/real/student_s1.yaml --stages eval --quiet
cp runs/real_s1/eval/results.json docs/results/real-s1-eval.json
$bin/python benchmarks/data_rate.py --config configs/real/student_s1.yaml --samples 60 \
  --metrics models/stages/real_s1/metrics.csv --output docs/results/data-rate-s1.json
$bin/python scripts/ship_model.py models/stages/real_s1/best.pt \
  --eval runs/real_s1/eval/results.json --stage distill --name dtpnet_real \
  --stage-dirs runs/real_s1/distill
# Real pairs with ground truth (evaluation only) against SGBM, raw and hole-filled, same run.
bash scripts/eval_real.sh docs/results/real-default models/dtpnet_real.pt \
  old_default=models/dtpnet_pruned_fast.pt old_teacher=models/gwcnet_teacher.pt
$bin/python benchmarks/real_table.py docs/results/real-default-x*.json \
  --output docs/results/real-targets.json
$bin/python benchmarks/sgbm_speed.py --model default=models/dtpnet_real.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480.json
$bin/python benchmarks/sgbm_speed.py --model real_s2=models/dtpnet_real_s2.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-real-s2.json
# Where ONNX Runtime spends the default's time at 640x480 (export revision 4; the revision-3
# profile ort-profile-640x480-pruned-r3.json and sgbm-speed-640x480-pruned-r3.json came from the
# same commands at commit a40b45f).
$bin/python benchmarks/ort_profile.py --checkpoint models/dtpnet_real_pruned.pt --size 480x640 \
  --runs 8 --output docs/results/ort-profile-640x480-pruned.json
# Distill then prune (the runtime default models/dtpnet_real_pruned.pt; about 1.7 h; resumable).
bash scripts/train_real.sh prune
bash scripts/finish_prune.sh   # synthetic test, real pairs with SGBM, 640x480 speed
$bin/python scripts/ship_model.py runs/real_prune/finetune/best.pt \
  --eval runs/real_prune/eval/results.json --stage finetune --name dtpnet_real_pruned \
  --stage-dirs runs/real_s1/distill runs/real_prune/finetune \
  --real docs/results/real-prune-x0.25.json docs/results/real-prune-x0.5.json \
  docs/results/real-prune-x1.json --speed docs/results/sgbm-speed-640x480-pruned.json
# The default's speed with export revision 4 (20 interleaved rounds), into its card.
$bin/python benchmarks/sgbm_speed.py --model pruned=models/dtpnet_real_pruned.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned.json
$bin/python scripts/ship_model.py models/dtpnet_real_pruned.pt --name dtpnet_real_pruned --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned.json
# Stage 2 of the default at 256x512 (8400 planned steps, spans sessions; cut at 2025 so far), then its
# synthetic test split and the real pairs against the default (not shipped: worse on small images).
bash scripts/train_real.sh pruned_s2
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s2.yaml --stages eval --quiet
$bin/python benchmarks/data_rate.py --config configs/real/pruned_s2.yaml --samples 60 \
  --metrics models/stages/real_pruned_s2/metrics.csv --output docs/results/data-rate-pruned-s2.json
cp runs/real_pruned_s2/eval/results.json docs/results/real-pruned-s2-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s2 runs/real_pruned_s2/distill/best.pt \
  default=models/dtpnet_real_pruned.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s2-x0.25.json \
  docs/results/real-pruned-s2-x0.5.json docs/results/real-pruned-s2-x1.json \
  --output docs/results/real-pruned-s2-targets.json
# Stage 3 of the default (near and far scenes, 2800 steps, about 1.8 h; resumable), its evaluation,
# shipping as the runtime default models/dtpnet_real_pruned_s3.pt, its speed, the main job.
bash scripts/train_real.sh pruned_s3
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s3.yaml --stages eval --quiet
cp runs/real_pruned_s3/eval/results.json docs/results/real-pruned-s3-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s3 runs/real_pruned_s3/distill/best.pt \
  default=models/dtpnet_real_pruned.pt pruned_s2=models/stages/real_pruned_s2/best.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s3-x0.25.json \
  docs/results/real-pruned-s3-x0.5.json docs/results/real-pruned-s3-x1.json \
  --output docs/results/real-pruned-s3-targets.json
$bin/python scripts/ship_model.py runs/real_pruned_s3/distill/best.pt \
  --eval runs/real_pruned_s3/eval/results.json --stage distill --name dtpnet_real_pruned_s3 \
  --inherit-training models/dtpnet_real_pruned.json \
  --stage-dirs models/stages/real_pruned_s2=configs/real/pruned_s2.yaml \
  runs/real_pruned_s3/distill=configs/real/pruned_s3.yaml \
  --real docs/results/real-pruned-s3-x0.25.json docs/results/real-pruned-s3-x0.5.json \
  docs/results/real-pruned-s3-x1.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s3=models/dtpnet_real_pruned_s3.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s3.json
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s3.pt --name dtpnet_real_pruned_s3 --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned-s3.json
# (session 8) every card's lineage counted to the steps whose weights went on (each stage continued
# from its parent's best.pt): stage 1 7000, the pruned fine-tune 8000, pruned_s2 2025, pruned_s3
# 2000, stage 2 of the unpruned student 500
$bin/python scripts/ship_model.py models/dtpnet_real.pt --name dtpnet_real --refresh \
  --steps-used runs/real_s1/distill=7000
$bin/python scripts/ship_model.py models/dtpnet_real_pruned.pt --name dtpnet_real_pruned --refresh \
  --steps-used runs/real_s1/distill=7000 runs/real_prune/finetune=8000
$bin/python scripts/ship_model.py models/dtpnet_real_s2.pt --name dtpnet_real_s2 --refresh \
  --steps-used runs/real_s1/distill=7000 runs/real_s2/distill=500
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s3.pt --name dtpnet_real_pruned_s3 --refresh \
  --steps-used runs/real_s1/distill=7000 runs/real_prune/finetune=8000 \
  models/stages/real_pruned_s2=2025 runs/real_pruned_s3/distill=2000
bash scripts/demo.sh && cp demo_out/summary.json docs/results/demo.json
# Stage 4 of the default (session 8; 3200 steps, about 1.5 h; resumable) and its evaluation.
bash scripts/train_real.sh pruned_s4
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s4.yaml --stages eval --quiet
cp runs/real_pruned_s4/eval/results.json docs/results/real-pruned-s4-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s4 runs/real_pruned_s4/distill/best.pt \
  default=models/dtpnet_real_pruned_s3.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s4-x0.25.json \
  docs/results/real-pruned-s4-x0.5.json docs/results/real-pruned-s4-x1.json \
  --output docs/results/real-pruned-s4-targets.json
# Stage 4 shipped as the runtime default (session 9), its speed (training paused) and the main job.
$bin/python scripts/ship_model.py models/stages/real_pruned_s4/best.pt \
  --eval docs/results/real-pruned-s4-eval.json --stage distill --name dtpnet_real_pruned_s4 \
  --inherit-training models/dtpnet_real_pruned_s3.json \
  --stage-dirs models/stages/real_pruned_s4=configs/real/pruned_s4.yaml \
  --real docs/results/real-pruned-s4-x0.25.json docs/results/real-pruned-s4-x0.5.json \
  docs/results/real-pruned-s4-x1.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s4=models/dtpnet_real_pruned_s4.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s4.json
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s4.pt --name dtpnet_real_pruned_s4 --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned-s4.json
bash scripts/demo.sh && cp demo_out/summary.json docs/results/demo.json
# Stage 5 (session 9; 2000 steps; resumable) and its evaluation (session 10).
bash scripts/train_real.sh pruned_s5
mkdir -p runs/real_pruned_s5/distill && cp models/stages/real_pruned_s5/* runs/real_pruned_s5/distill/
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s5.yaml --stages eval --quiet
cp runs/real_pruned_s5/eval/results.json docs/results/real-pruned-s5-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s5 models/stages/real_pruned_s5/best.pt \
  default=models/dtpnet_real_pruned_s4.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s5-x0.25.json \
  docs/results/real-pruned-s5-x0.5.json docs/results/real-pruned-s5-x1.json \
  --output docs/results/real-pruned-s5-targets.json
# Stage 6 (session 10; 1200 steps; resumable), its evaluation, shipped as the runtime default, its speed
# (twice, stage 4's weights between; nothing else running) and the main job.
bash scripts/train_real.sh pruned_s6
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s6.yaml --stages eval --quiet
cp runs/real_pruned_s6/eval/results.json docs/results/real-pruned-s6-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s6 models/stages/real_pruned_s6/best.pt \
  default=models/dtpnet_real_pruned_s4.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s6-x0.25.json \
  docs/results/real-pruned-s6-x0.5.json docs/results/real-pruned-s6-x1.json \
  --output docs/results/real-pruned-s6-targets.json
$bin/python scripts/ship_model.py models/stages/real_pruned_s6/best.pt \
  --eval docs/results/real-pruned-s6-eval.json --stage distill --name dtpnet_real_pruned_s6 \
  --inherit-training models/dtpnet_real_pruned_s4.json \
  --stage-dirs models/stages/real_pruned_s5=configs/real/pruned_s5.yaml \
  models/stages/real_pruned_s6=configs/real/pruned_s6.yaml \
  --steps-used models/stages/real_pruned_s5=1000 \
  --real docs/results/real-pruned-s6-x0.25.json docs/results/real-pruned-s6-x0.5.json \
  docs/results/real-pruned-s6-x1.json \
  --description "Real-scene student distilled then pruned (0.30 M params, D = 192), then trained on fresh near-and-far synthetic scenes at 256x512 in five more stages (stage 6: lr 5e-5, seed 17, 1200 steps)"
$bin/python benchmarks/sgbm_speed.py --model pruned_s6=models/dtpnet_real_pruned_s6.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s6.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s4=models/dtpnet_real_pruned_s4.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s4-session10.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s6=models/dtpnet_real_pruned_s6.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s6-run2.json
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s6.pt --name dtpnet_real_pruned_s6 --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned-s6.json
bash scripts/demo.sh && cp demo_out/summary.json docs/results/demo.json
# The wide 2D teacher (sessions 10-11; resumable) and its real pairs at step 6000 (session 10).
bash scripts/train_real.sh teacher
for scale in 0.25 0.5; do
  $bin/dtp-stereo eval --dataset middlebury2014 --root data/real --split all \
    --checkpoint models/stages/dtp_real/teacher/best.pt --label teacher \
    --also default=models/dtpnet_real_pruned_s6.pt --also real_s1=models/dtpnet_real.pt --with-sgbm \
    --scale $scale --threads 2 --output docs/results/teacher-partial-x$scale.json
done
# The finished teacher (session 11; 8000 steps, best.pt at step 8000) at all three scales.
LABEL=teacher bash scripts/eval_real.sh docs/results/teacher models/stages/dtp_real/teacher/best.pt \
  default=models/dtpnet_real_pruned_s6.pt
# Teacher stage 2 at 256x512 (session 11; resumable) and its real pairs.
bash scripts/train_real.sh teacher_s2
LABEL=teacher_s2 bash scripts/eval_real.sh docs/results/teacher-s2 models/stages/real_teacher_s2/best.pt \
  default=models/dtpnet_real_pruned_s6.pt teacher=models/stages/dtp_real/teacher/best.pt
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/teacher_s2.yaml --stages eval --quiet
cp runs/real_teacher_s2/eval/results.json docs/results/real-teacher-s2-eval.json
# Shipped as the operating point real_wide, with its speed at 640x480.
$bin/python scripts/ship_model.py models/stages/real_teacher_s2/best.pt \
  --eval docs/results/real-teacher-s2-eval.json --stage distill --name dtpnet_real_wide \
  --stage-dirs models/stages/dtp_real/teacher=configs/real/dtp_real.yaml \
  models/stages/real_teacher_s2=configs/real/teacher_s2.yaml \
  --real docs/results/teacher-s2-x0.25.json docs/results/teacher-s2-x0.5.json \
  docs/results/teacher-s2-x1.json \
  --description "Wide 2D real-scene DTPnet (the distillation teacher: 2.56 M params, D = 192, 32 correlation channels), ground truth only: 8000 steps at 128x256, then 600 at 256x512"
$bin/python benchmarks/sgbm_speed.py --model real_wide=models/dtpnet_real_wide.pt --size 480x640 \
  --threads 2 --rounds 10 --output docs/results/sgbm-speed-640x480-real-wide.json
$bin/python scripts/ship_model.py models/dtpnet_real_wide.pt --name dtpnet_real_wide --refresh \
  --speed docs/results/sgbm-speed-640x480-real-wide.json
# What its labels could teach the stage-6 default in adaptation (analysis of evaluation data).
$bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s6.pt --threads 2 \
  --proxy sgbm teacher sgbm+teacher --proxy-teacher models/stages/real_teacher_s2/best.pt \
  --output docs/results/adapt-proxy-quality-teacher-s2.json
# Stage 7: the stage-6 default distilled from the stage-2 teacher (GT + DTP logits L1).
bash scripts/train_real.sh pruned_s7
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s7.yaml --stages eval --quiet
cp runs/real_pruned_s7/eval/results.json docs/results/real-pruned-s7-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s7 models/stages/real_pruned_s7/best.pt \
  default=models/dtpnet_real_pruned_s6.pt
# Adaptation from the stage-6 default with SGBM labels, and with the teacher filling SGBM's holes.
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s6.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 --variant default:steps=300 \
  --variant sgbm+teacher:proxy=sgbm+teacher,proxy_teacher=models/stages/real_teacher_s2/best.pt,steps=300 \
  --output docs/results/adapt-teacher-proxy-s6.json
# Adaptation without ground truth (issue 10) on the real pairs: before / after / SGBM. These two
# ran with the constant-rate defaults of sessions 6-7 (lr 1.5e-4), spelled out since session 8's
# cosine default (their JSONs name the variant "default"; --timing-pairs uses the current defaults).
const="lr_schedule=constant,lr=1.5e-4,steps=300"
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s3.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 --variant "default:$const" \
  --output docs/results/adapt-real-pruned-s3.json
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 100 --variant "default:$const" \
  --output docs/results/adapt-real.json
# The learning-rate schedule and where the anchor acts (session 8; cosine 3e-4 became the default),
# and how far SGBM's proxy labels can take adaptation on each pair (analysis of evaluation data).
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s3.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 \
  --variant cos3e-4:lr_schedule=cosine,lr=0.0003,steps=300 \
  --variant cos3e-4_unlabelled:lr_schedule=cosine,lr=0.0003,anchor_on=unlabelled,steps=300 \
  --output docs/results/adapt-ablation-cosine.json
$bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s3.pt --threads 1 \
  --output docs/results/adapt-proxy-quality.json
# The same pairs from the stage-4 default (session 9): proxy block size, replay weight, learning rate.
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s4.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 --variant default:steps=300 \
  --variant blocks3:proxy_blocks=3,steps=300 --variant replay0.5:synthetic_weight=0.5,steps=300 --variant lr5e-4:lr=0.0005,steps=300 \
  --output docs/results/adapt-ablation-proxy.json
# What the proxy labels could teach the stage-6 default: block sizes, and a network teacher (session 10).
$bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s6.pt --threads 1 \
  --proxy-blocks 5 3 3+5+7 --output docs/results/adapt-proxy-quality-blocks.json
$bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s6.pt --threads 1 \
  --proxy sgbm teacher sgbm+teacher --proxy-teacher real_s1 \
  --output docs/results/adapt-proxy-quality-teacher-real-s1.json
# Which adaptation losses and settings earn their place (real pairs = validation here). These rows
# were run with the earlier defaults (lr 5e-5, anchor 1, no replay), spelled out here since the
# defaults changed; adapt-real-lr5e-5.json is the earlier defaults' main run (same command as above).
old="lr=5e-5,lr_schedule=constant,anchor_weight=1,synthetic_weight=0,steps=300"
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --variant "default:$old" \
  --variant "proxy_only:$old,photometric_weight=0,smoothness_weight=0" \
  --variant "photometric_only:$old,proxy=none" --variant "strong:$const,lr=2e-4,anchor_weight=0.25,synthetic_weight=0" \
  --output docs/results/adapt-ablation.json
# adapt-ablation-replay.json came from commit ada675b (replay disparities up to 0.3 x the crop width);
# the code now replays up to 0.8 D, which these two runs use:
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 \
  --variant "strong_replay:$const,lr=2e-4,anchor_weight=0.25,synthetic_weight=1" \
  --output docs/results/adapt-ablation-replay-wide.json
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 \
  --variant "replay2:$const,lr=2e-4,anchor_weight=0.25,synthetic_weight=2" \
  --variant "replay1_lr15:$const,anchor_weight=0.25,synthetic_weight=1" \
  --output docs/results/adapt-ablation-replay2.json
# Images across processes, and the soak (issue 12).
$bin/python benchmarks/crossprocess_rate.py --pairs 10 --size 480x640 --repeats 3 \
  --output docs/results/crossprocess-rate.json
$bin/python benchmarks/soak.py --frames 1200 --rate 30 --size 480x640 --fault-every 100 \
  --output docs/results/soak.json
# The photo texture bank of the photo_layers / single_image / mix data (Debian's photo packages).
if [ ! -d data/textures ]; then
  command -v apt-get >/dev/null && (apt-get install -y -q gnome-backgrounds \
    plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers opencv-doc || true) >/dev/null 2>&1
  .venv/bin/dtp-train textures --out data/textures
fi
# The claims rows' data paths (pairs/s in one process).
for n in synthetic photo_layers single_image; do
  extra=(); [ $n = synthetic ] || extra=(data.train.name=$n data.train.textures=data/textures)
  $bin/python benchmarks/data_rate.py --config configs/real/claims.yaml --samples 40 \
    --output docs/results/data-rate-claims-$n.json ${extra[@]+"${extra[@]}"}
done
# The papers' claims and the data / architecture choices at one budget (issue 9; about 2.5 h,
# each row resumable; rows kept in models/stages/claims/<row>).
for row in gt both pruned photo single kl scratch l1 norm corr32; do
  bash scripts/train_real.sh claims-$row
done
also=(); for row in both pruned photo single kl scratch l1 norm corr32; do
  [ -f models/stages/claims/$row/eval/results.json ] || continue
  ckpt=models/stages/claims/$row/best.pt; [ $row = pruned ] && ckpt=models/stages/claims/pruned/finetune/best.pt
  also+=(--also "$row=$ckpt")
done
for scale in 0.25 0.5; do
  .venv/bin/dtp-stereo eval --dataset middlebury2014 --root data/real --split all --scale $scale \
    --checkpoint models/stages/claims/gt/best.pt --label gt "${also[@]}" --threads 2 \
    --output docs/results/claims-real-x$scale.json
done
# session 21: the mix row (70 % procedural, 30 % single-photo pairs), evaluated beside gt and single
bash scripts/train_real.sh claims-mix
bash scripts/train_real.sh claims-mix50  # the same at a 50 % photo share
LABEL=mix SCALES="0.25 0.5" bash scripts/eval_real.sh docs/results/claims-mix \
  models/stages/claims/mix/best.pt gt=models/stages/claims/gt/best.pt \
  single=models/stages/claims/single/best.pt mix50=models/stages/claims/mix50/best.pt
$bin/python benchmarks/claims_table.py --teacher-eval docs/results/real-s1-eval.json \
  --real docs/results/claims-real-x0.25.json docs/results/claims-real-x0.5.json \
  docs/results/claims-mix-x0.25.json docs/results/claims-mix-x0.5.json \
  --output docs/results/claims-real.json
# Stage 2 (256x512, edge refinement; resumable across sessions from models/stages/real_s2).
bash scripts/train_real.sh s2
# Session 13: Aloe x1 errors by GT disparity; stage 8 (thin objects; cut at step 1880, resumable) and
# stage 9 (stage 6 + edge refinement on those scenes), evaluated; neither shipped.
$bin/python benchmarks/error_by_disparity.py --scale 1 --threads 1 \
  --checkpoints s6=models/dtpnet_real_pruned_s6.pt wide=models/dtpnet_real_wide.pt \
  --output docs/results/aloe-x1-error-by-disparity.json
bash scripts/train_real.sh pruned_s8
bash scripts/train_real.sh pruned_s9
$bin/python benchmarks/error_by_disparity.py --scale 1 --threads 2 \
  --checkpoints s9=models/stages/real_pruned_s9/best.pt s8=models/stages/real_pruned_s8/best.pt \
  --output docs/results/aloe-x1-error-by-disparity-s8-s9.json
bash scripts/eval_real.sh docs/results/real-pruned-s9 models/stages/real_pruned_s9/best.pt \
  default=models/dtpnet_real_pruned_s6.pt s8=models/stages/real_pruned_s8/best.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s9-x0.25.json \
  docs/results/real-pruned-s9-x0.5.json docs/results/real-pruned-s9-x1.json \
  --output docs/results/real-pruned-s9-targets.json
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s9.yaml --stages eval --quiet
cp runs/real_pruned_s9/eval/results.json docs/results/real-pruned-s9-eval.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s6=models/dtpnet_real_pruned_s6.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s6-session13.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s9=models/stages/real_pruned_s9/best.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s9.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s6=models/dtpnet_real_pruned_s6.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s6-session13-run2.json
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s8.yaml --stages eval --quiet
cp runs/real_pruned_s8/eval/results.json docs/results/real-pruned-s8-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s8 models/stages/real_pruned_s8/best.pt \
  default=models/dtpnet_real_pruned_s6.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s8-x0.25.json \
  docs/results/real-pruned-s8-x0.5.json docs/results/real-pruned-s8-x1.json \
  --output docs/results/real-pruned-s8-targets.json
# Session 14: stage 8 shipped as the runtime default (model card from the eval and real-pair JSONs),
# its speed (nothing else running) and the main job on it.
$bin/python scripts/ship_model.py models/stages/real_pruned_s8/best.pt \
  --eval docs/results/real-pruned-s8-eval.json --stage distill --name dtpnet_real_pruned_s8 \
  --inherit-training models/dtpnet_real_pruned_s6.json \
  --stage-dirs models/stages/real_pruned_s8=configs/real/pruned_s8.yaml \
  --steps-used models/stages/real_pruned_s8=2250 \
  --real docs/results/real-pruned-s8-x0.25.json docs/results/real-pruned-s8-x0.5.json \
  docs/results/real-pruned-s8-x1.json \
  --description "Real-scene student distilled then pruned (0.30 M params, D = 192), then trained on fresh near-and-far synthetic scenes at 256x512 in six more stages (stage 8: stage 6 plus thin slanted objects, lr 1e-4, seed 31, best of 3000 steps at 2250)"
$bin/python benchmarks/sgbm_speed.py --model pruned_s8=models/dtpnet_real_pruned_s8.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s8.json
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s8.pt --name dtpnet_real_pruned_s8 --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned-s8.json
bash scripts/demo.sh && cp demo_out/summary.json docs/results/demo.json
# Session 14: stage 10 (stage 8 grown by the convex upsampling; resumable), its evaluation, speed
# (nothing else running), shipped as the runtime default, and the main job on it.
bash scripts/train_real.sh pruned_s10
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s10.yaml --stages eval --quiet
cp runs/real_pruned_s10/eval/results.json docs/results/real-pruned-s10-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s10 models/stages/real_pruned_s10/best.pt \
  default=models/dtpnet_real_pruned_s8.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s10-x0.25.json \
  docs/results/real-pruned-s10-x0.5.json docs/results/real-pruned-s10-x1.json \
  --output docs/results/real-pruned-s10-targets.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s10=models/stages/real_pruned_s10/best.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s10.json
$bin/python scripts/ship_model.py models/stages/real_pruned_s10/best.pt \
  --eval docs/results/real-pruned-s10-eval.json --stage distill --name dtpnet_real_pruned_s10 \
  --inherit-training models/dtpnet_real_pruned_s8.json \
  --stage-dirs models/stages/real_pruned_s10=configs/real/pruned_s10.yaml \
  --steps-used models/stages/real_pruned_s10=3750 \
  --real docs/results/real-pruned-s10-x0.25.json docs/results/real-pruned-s10-x0.5.json \
  docs/results/real-pruned-s10-x1.json \
  --description "Real-scene student distilled then pruned (0.30 M params, D = 192), trained on fresh near-and-far synthetic scenes at 256x512 in six more stages, then grown by a learned convex x4 upsampling (0.31 M) and trained on thin-object scenes (stage 10: lr 1e-4, seed 41, best of 5000 steps at 3750)"
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s10.pt --name dtpnet_real_pruned_s10 --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned-s10.json
$bin/python benchmarks/error_by_disparity.py --scale 1 \
  --checkpoints s10=models/dtpnet_real_pruned_s10.pt s8=models/dtpnet_real_pruned_s8.pt \
  --output docs/results/aloe-x1-error-by-disparity-s10.json
bash scripts/demo.sh && cp demo_out/summary.json docs/results/demo.json
# Session 14: both speeds again (nothing else running), stage 10 then stage 8.
$bin/python benchmarks/sgbm_speed.py --model pruned_s10=models/dtpnet_real_pruned_s10.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s10-run2.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s8=models/dtpnet_real_pruned_s8.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s8-run2.json
# Session 15: adaptation (issue 10) from the stage-10 default with the current defaults.
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s10.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 --variant default:steps=300 \
  --output docs/results/adapt-real-pruned-s10.json
# Stage 11: stage 10 on scenes whose disparities reach D - 1 more often (cap fraction up to 0.40).
bash scripts/train_real.sh pruned_s11
OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/pruned_s11.yaml --stages eval --quiet
cp runs/real_pruned_s11/eval/results.json docs/results/real-pruned-s11-eval.json
bash scripts/eval_real.sh docs/results/real-pruned-s11 models/stages/real_pruned_s11/best.pt \
  default=models/dtpnet_real_pruned_s10.pt
$bin/python benchmarks/real_table.py docs/results/real-pruned-s11-x0.25.json \
  docs/results/real-pruned-s11-x0.5.json docs/results/real-pruned-s11-x1.json \
  --output docs/results/real-pruned-s11-targets.json
$bin/python benchmarks/error_by_disparity.py --scale 1 \
  --checkpoints s11=models/stages/real_pruned_s11/best.pt s10=models/dtpnet_real_pruned_s10.pt \
  --output docs/results/aloe-x1-error-by-disparity-s11.json
$bin/python benchmarks/sgbm_speed.py --model pruned_s11=models/stages/real_pruned_s11/best.pt --size 480x640 \
  --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-pruned-s11.json
$bin/python scripts/ship_model.py models/stages/real_pruned_s11/best.pt \
  --eval docs/results/real-pruned-s11-eval.json --stage distill --name dtpnet_real_pruned_s11 \
  --inherit-training models/dtpnet_real_pruned_s10.json \
  --stage-dirs models/stages/real_pruned_s11=configs/real/pruned_s11.yaml \
  --steps-used models/stages/real_pruned_s11=3900 \
  --real docs/results/real-pruned-s11-x0.25.json docs/results/real-pruned-s11-x0.5.json \
  docs/results/real-pruned-s11-x1.json \
  --description "Real-scene student distilled then pruned (0.30 M params, D = 192), trained on fresh near-and-far synthetic scenes at 256x512 in six more stages, grown by a learned convex x4 upsampling (0.31 M, stage 10), then trained on scenes whose disparities reach D - 1 more often (stage 11: lr 1e-4, seed 43, best of 4000 steps at 3900)"
$bin/python scripts/ship_model.py models/dtpnet_real_pruned_s11.pt --name dtpnet_real_pruned_s11 --refresh \
  --speed docs/results/sgbm-speed-640x480-pruned-s11.json
bash scripts/demo.sh && cp demo_out/summary.json docs/results/demo.json
# Stage 12 (speed): distill-then-prune of stage 11 to 8-channel blocks, then fine-tuned.
bash scripts/train_real.sh prune_s12
cp models/stages/real_prune_s12/eval/results.json docs/results/prune-s12-eval.json
$bin/python benchmarks/sgbm_speed.py --model prune_s12=models/stages/real_prune_s12/finetune/best.pt \
  --size 480x640 --threads 2 --rounds 20 --output docs/results/sgbm-speed-640x480-prune-s12.json
# A trained stage's evaluation: its synthetic test split, the real pairs beside the default
# (validation), and the targets table. eval_stage pruned_sN: docs/results/real-pruned-sN-*.
eval_stage() {  # STAGE [LABEL=CKPT ...]: synthetic test, then the real pairs beside stage 11
  local out=docs/results/real-${1//_/-}
  OMP_NUM_THREADS=2 $bin/dtp-train --config configs/real/$1.yaml --stages eval --quiet
  cp runs/real_$1/eval/results.json $out-eval.json
  bash scripts/eval_real.sh $out models/stages/real_$1/best.pt default=models/dtpnet_real_pruned_s11.pt \
    "${@:2}"
  $bin/python benchmarks/real_table.py $out-x0.25.json $out-x0.5.json $out-x1.json \
    --output $out-targets.json
}
# Stage 13 (speed): stage 11 cut to 48 logit planes, then trained (not shipped: faster but worse).
bash scripts/train_real.sh pruned_s13
eval_stage pruned_s13
for run in 1 2 3; do
  rounds=12; [ "$run" = 3 ] && rounds=20
  for m in s11=models/dtpnet_real_pruned_s11.pt s13=models/stages/real_pruned_s13/best.pt; do
    $bin/python benchmarks/sgbm_speed.py --model pruned_$m --size 480x640 --threads 2 \
      --rounds $rounds --output docs/results/sgbm-speed-640x480-s13-vs-s11-${m%%=*}-run$run.json
  done
done
# Stage 14: stage 13 grown by the convex upsampling's offset (not shipped: worse on real pairs).
bash scripts/train_real.sh pruned_s14
eval_stage pruned_s14
# Export revision 4 against 5 on stage 11 (docs/results.md, "What the speed work changed"): r4 from
# a checkout of commit e607f32 (the last with revision 4), r5 from this one, alternating.
r4=$(mktemp -d)/r4 && git worktree add --detach "$r4" e607f32
r4_run() { (cd "$r4" && PYTHONPATH="$r4" "$root/$bin/python" "$@"); }
r4_run benchmarks/ort_profile.py --checkpoint models/dtpnet_real_pruned_s11.pt --size 480x640 --runs 10 \
  --threads 2 --top-nodes 40 --output "$root/docs/results/ort-profile-640x480-pruned-s11-r4.json"
$bin/python benchmarks/ort_profile.py --checkpoint models/dtpnet_real_pruned_s11.pt --size 480x640 --runs 10 \
  --threads 2 --top-nodes 40 --output docs/results/ort-profile-640x480-pruned-s11-r5.json
for run in 1 2; do
  r4_run benchmarks/sgbm_speed.py --model s11_r4=models/dtpnet_real_pruned_s11.pt --size 480x640 \
    --threads 2 --rounds 12 --output "$root/docs/results/sgbm-speed-640x480-s11-r4-run$run.json"
  $bin/python benchmarks/sgbm_speed.py --model s11_r5=models/dtpnet_real_pruned_s11.pt --size 480x640 \
    --threads 2 --rounds 12 --output docs/results/sgbm-speed-640x480-s11-r5-run$run.json
done
git worktree remove --force "$r4"
# Issue 10 from the stage-11 default (docs/results.md, "Adapting to a camera without ground truth").
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 --variant default:steps=300 \
  --output docs/results/adapt-real-pruned-s11.json
# Stage 15: stage 11 grown by the convex upsampling's offset.
bash scripts/train_real.sh pruned_s15
eval_stage pruned_s15
for run in 1 2; do
  for m in s11=models/dtpnet_real_pruned_s11.pt s15=models/stages/real_pruned_s15/best.pt; do
    $bin/python benchmarks/sgbm_speed.py --model pruned_$m --size 480x640 --threads 2 \
      --rounds 12 --output docs/results/sgbm-speed-640x480-s15-vs-s11-${m%%=*}-run$run.json
  done
done
# Stage 16: stage 15 continued at half its learning rate.
bash scripts/train_real.sh pruned_s16
eval_stage pruned_s16
# Issue 10, why Motorcycle stops near -10 % (docs/results.md, "Why Motorcycle stops near -10 %").
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs motorcycle@0.5 --threads 2 --timing-pairs 0 --variant default:steps=300 --keep "$root/runs/adapted_s11" \
  --output docs/results/adapt-s11-motorcycle-kept.json
$bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs motorcycle@0.5 aloe@0.25 --threads 2 --output docs/results/adapt-proxy-quality-s11.json
$bin/python benchmarks/proxy_quality.py --checkpoint runs/adapted_s11/adapted_default_motorcycle_0.5.pt \
  --pairs motorcycle@0.5 --threads 2 --output docs/results/adapt-proxy-quality-s11-adapted-motorcycle.json
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 \
  --variant photo_only:proxy_weight=0,steps=300 --variant photo3:photometric_weight=3,steps=300 \
  --variant anchor0:anchor_weight=0,steps=300 --variant steps600:steps=600 \
  --output docs/results/adapt-ablation-s11-unlabelled.json
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 \
  --variant seed1:seed=1,steps=300 --variant seed1_steps600:seed=1,steps=600 \
  --output docs/results/adapt-steps600-seed1-s11.json
# session 20: padded SGBM proxies (left border labelled; stays off), then the 600-step defaults
$bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --proxy-pad off on \
  --output docs/results/adapt-proxy-quality-pad-s11.json
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 0 \
  --variant pad:proxy_pad=1,steps=300 --variant pad_steps600:proxy_pad=1,steps=600 \
  --output docs/results/adapt-pad-s11.json
$bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real_pruned_s11.pt \
  --pairs aloe@0.25 motorcycle@0.5 --threads 2 --timing-pairs 100 --variant default \
  --output docs/results/adapt-real-pruned-s11-steps600.json
# Stage 17 (session 21): stage 11 on the mix of procedural scenes and single-photo pairs.
$bin/python benchmarks/data_rate.py --config configs/real/pruned_s17.yaml --samples 40 \
  --output docs/results/data-rate-pruned-s17.json
bash scripts/train_real.sh pruned_s17
cp runs/real_pruned_s17/distill/last.pt models/stages/real_pruned_s17/final.pt  # its last step
eval_stage pruned_s17 final=models/stages/real_pruned_s17/final.pt
