#!/usr/bin/env bash
# Result tables (docs/results.md): strategies x seeds with dominant labels on the default synthetic
# data set, then the mean ± std table (alseg summarize).
#   bash scripts/baselines.sh [OUT_DIR] [PARALLEL]
#   STRATEGIES="coreset badge" SEEDS="0 1 2" bash scripts/baselines.sh runs/more 2
# PARALLEL runs share the cores (each gets OMP_NUM_THREADS=cores/PARALLEL). Finished runs
# are skipped and killed ones resumed, so the script can be started again after a stop.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/baselines}
par=${2:-1}
strategies=${STRATEGIES:-random entropy bvsb classbal}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
for seed in $seeds; do
  for s in $strategies; do
    plan_run "$out/$s-seed$seed" active.strategy=$s seed=$seed
  done
done | run_plans "$out" "$par" "$threads"
alseg summarize "$out"/*/ | tee "$out/table.md"
