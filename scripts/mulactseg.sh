#!/usr/bin/env bash
# README results of MulActSeg on the synthetic scenes: multi-class labels (stage 1 and
# stage 2), dominant and pixel labels, and the loss ablations, at the same click budget.
#   SEEDS="0 1 2" bash scripts/mulactseg.sh [OUT_DIR] [PARALLEL]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/mulactseg}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
declare -A settings=(
  [multiclass-stage2]=""
  [multiclass-stage1]="stage2.enabled=false"
  [dominant]="labeling=dominant stage2.enabled=false"
  [pixel]="labeling=pixel stage2.enabled=false"
  [multiclass-no-pp]="stage2.enabled=false model.loss_weights=[16.0,8.0,0.0]"
  [multiclass-no-mp]="stage2.enabled=false model.loss_weights=[16.0,0.0,1.0]"
)
for seed in $seeds; do
  for name in multiclass-stage2 multiclass-stage1 dominant pixel multiclass-no-pp multiclass-no-mp; do
    plan_run "$out/$name-seed$seed" experiment=mulactseg_synthetic ${settings[$name]} seed=$seed
  done
done | run_plans "$out" "$par" "$threads"
alseg summarize "$out"/*/ | tee "$out/table.md"
