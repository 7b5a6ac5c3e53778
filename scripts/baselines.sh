#!/usr/bin/env bash
# README results tables: strategies x seeds with dominant labels on the default synthetic
# data set, then the mean ± std table (alseg summarize).
#   bash scripts/baselines.sh [OUT_DIR] [PARALLEL]
#   STRATEGIES="coreset badge" SEEDS="0 1 2" bash scripts/baselines.sh runs/more 2
# PARALLEL runs share the cores (each gets OMP_NUM_THREADS=cores/PARALLEL). Finished runs
# are skipped and killed ones resumed, so the script can be started again after a stop.
set -euo pipefail
out=${1:-runs/baselines}
par=${2:-1}
strategies=${STRATEGIES:-random entropy bvsb classbal}
seeds=${SEEDS:-0 1 2}
threads=$(( $(nproc) / par )); [ "$threads" -ge 1 ] || threads=1
mkdir -p "$out"
for seed in $seeds; do
  for s in $strategies; do
    d="$out/$s-seed$seed"
    if [ -f "$d/state.json" ]; then
      grep -q '"done"' "$d/state.json" || echo "resume $d"   # finish a killed run
    else
      echo "run active.strategy=$s seed=$seed run_dir=$d logger=none trainer.enable_progress_bar=false"
    fi
  done
done | xargs -P "$par" -L 1 env OMP_NUM_THREADS="$threads" alseg >> "$out/log.txt" 2>&1
alseg summarize "$out"/*/ | tee "$out/table.md"
