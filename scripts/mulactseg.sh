#!/usr/bin/env bash
# Results (docs/results.md) of MulActSeg on the synthetic scenes: multi-class labels (stage 1 and
# stage 2), dominant and pixel labels, the loss ablations, and image tags (CAMs ->
# boundaries -> pseudo labels), at the same click budget.
#   SEEDS="0 1 2" SETTINGS="dominant pixel ..." bash scripts/mulactseg.sh [OUT_DIR] [PARALLEL]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/mulactseg}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
m=experiment=mulactseg_synthetic
declare -A settings=(
  [multiclass-stage2]="$m"
  [multiclass-stage1]="$m stage2.enabled=false"
  [dominant]="$m labeling=dominant stage2.enabled=false"
  [pixel]="$m labeling=pixel stage2.enabled=false"
  [multiclass-no-pp]="$m stage2.enabled=false model.loss_weights=[16.0,8.0,0.0]"
  [multiclass-no-mp]="$m stage2.enabled=false model.loss_weights=[16.0,0.0,1.0]"
  [image-tags]="experiment=image_labels_synthetic"
)
names=${SETTINGS:-multiclass-stage2 multiclass-stage1 dominant pixel multiclass-no-pp multiclass-no-mp image-tags}
for seed in $seeds; do
  for name in $names; do
    plan_run "$out/$name-seed$seed" ${settings[$name]} seed=$seed
  done
done | run_plans "$out" "$par" "$threads"
alseg summarize "$out"/*/ | tee "$out/table.md"
