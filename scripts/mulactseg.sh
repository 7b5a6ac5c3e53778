#!/usr/bin/env bash
# README results of MulActSeg on the synthetic scenes: multi-class labels (stage 1 and
# stage 2), dominant and pixel labels, and the loss ablations, at the same click budget.
#   SEEDS="0 1 2" bash scripts/mulactseg.sh [OUT_DIR] [PARALLEL]
set -euo pipefail
out=${1:-runs/mulactseg}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
threads=$(( $(nproc) / par )); [ "$threads" -ge 1 ] || threads=1
declare -A settings=(
  [multiclass-stage2]=""
  [multiclass-stage1]="stage2.enabled=false"
  [dominant]="labeling=dominant stage2.enabled=false"
  [pixel]="labeling=pixel stage2.enabled=false"
  [multiclass-no-pp]="stage2.enabled=false model.loss_weights=[16.0,8.0,0.0]"
  [multiclass-no-mp]="stage2.enabled=false model.loss_weights=[16.0,0.0,1.0]"
)
mkdir -p "$out"
for seed in $seeds; do
  for name in multiclass-stage2 multiclass-stage1 dominant pixel multiclass-no-pp multiclass-no-mp; do
    d="$out/$name-seed$seed"
    if [ -f "$d/state.json" ]; then
      grep -q '"done"' "$d/state.json" || echo "resume $d"
    else
      echo "run experiment=mulactseg_synthetic ${settings[$name]} seed=$seed run_dir=$d logger=none trainer.enable_progress_bar=false"
    fi
  done
done | xargs -P "$par" -L 1 env OMP_NUM_THREADS="$threads" alseg >> "$out/log.txt" 2>&1
alseg summarize "$out"/*/ | tee "$out/table.md"
