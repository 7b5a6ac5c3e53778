#!/usr/bin/env bash
# README results of adaptive superpixels (METHODS.md B) on the synthetic scenes: merged vs
# base superpixels with size-balanced BvSB, with and without sieving, same click budget.
#   SEEDS="0 1 2" bash scripts/adaptive.sh [OUT_DIR] [PARALLEL]
set -euo pipefail
out=${1:-runs/adaptive}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
declare -A settings=(
  [adaptive-sieve]=""
  [adaptive]="sieve.enabled=false"
  [base-sieve]="active.strategy=sizebal ~active.strategy_params.eps"
  [base]="active.strategy=sizebal ~active.strategy_params.eps sieve.enabled=false"
)
mkdir -p "$out"
for seed in $seeds; do
  for name in adaptive-sieve adaptive base-sieve base; do
    d="$out/$name-seed$seed"
    if [ -f "$d/state.json" ]; then
      grep -q '"done"' "$d/state.json" || echo "resume $d"
    else
      echo "run experiment=adaptive_superpixel_synthetic ${settings[$name]} seed=$seed run_dir=$d logger=none trainer.enable_progress_bar=false"
    fi
  done
done | xargs -P "$par" -L 1 env OMP_NUM_THREADS="$threads" alseg >> "$out/log.txt" 2>&1
alseg summarize "$out"/*/ | tee "$out/table.md"
