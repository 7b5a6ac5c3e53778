#!/usr/bin/env bash
# Results (docs/results.md) of adaptive superpixels (docs/methods.md) on the synthetic scenes: merged vs
# base superpixels with size-balanced BvSB, with and without sieving, same click budget;
# adaptive-sieve-once: each label sieved once, in its own round (sieve.scope=new, the
# ablation of the official re-sieving of every label each round).
#   SEEDS="0 1 2" bash scripts/adaptive.sh [OUT_DIR] [PARALLEL]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/adaptive}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
declare -A settings=(
  [adaptive-sieve]=""
  [adaptive-sieve-once]="sieve.scope=new"
  [adaptive]="sieve.enabled=false"
  [base-sieve]="active.strategy=sizebal ~active.strategy_params.eps"
  [base]="active.strategy=sizebal ~active.strategy_params.eps sieve.enabled=false"
)
for seed in $seeds; do
  for name in adaptive-sieve adaptive-sieve-once adaptive base-sieve base; do
    plan_run "$out/$name-seed$seed" experiment=adaptive_superpixel_synthetic ${settings[$name]} seed=$seed
  done
done | run_plans "$out" "$par" "$threads"
alseg summarize "$out"/*/ | tee "$out/table.md"
