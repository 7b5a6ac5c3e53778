#!/usr/bin/env bash
# README results table: random, entropy, bvsb, classbal with dominant labels on the
# default synthetic data set, 3 seeds each, then the mean ± std table.
#   bash scripts/baselines.sh [OUT_DIR] [PARALLEL]
# PARALLEL runs share the cores (each gets OMP_NUM_THREADS=cores/PARALLEL).
set -euo pipefail
out=${1:-runs/baselines}
par=${2:-1}
threads=$(( $(nproc) / par )); [ "$threads" -ge 1 ] || threads=1
mkdir -p "$out"
for seed in 0 1 2; do
  for s in random entropy bvsb classbal; do
    d="$out/$s-seed$seed"
    if [ -f "$d/state.json" ]; then
      grep -q '"done"' "$d/state.json" || echo "resume $d"   # finish a killed run
    else
      echo "run active.strategy=$s seed=$seed run_dir=$d logger=none trainer.enable_progress_bar=false"
    fi
  done
done | xargs -P "$par" -L 1 env OMP_NUM_THREADS="$threads" alseg > "$out/log.txt" 2>&1
alseg summarize "$out"/*/ | tee "$out/table.md"
