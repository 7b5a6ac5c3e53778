#!/usr/bin/env bash
# Results (docs/results.md) of debiasing on the embedded sets: ERM, JTT, LfF, LWBC and GroupDRO (group
# labels, an upper bound) on the same frozen SimCLR features, for each data set and
# bias-conflicting ratio, 3 seeds. The SimCLR backbone of a (data set, ratio) is trained
# once, by its first run (the other runs read the feature cache).
#   SEEDS="0 1 2" SETS="colored_shapes waterbird_shapes" RATIOS="0.05 0.01" \
#     METHODS="erm jtt lff lwbc groupdro" bash scripts/debias.sh [OUT_DIR] [PARALLEL] [overrides...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/debias}
par=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
seeds=${SEEDS:-0 1 2}
sets=${SETS:-colored_shapes waterbird_shapes}
ratios=${RATIOS:-0.05 0.01}
methods=${METHODS:-erm jtt lff lwbc groupdro}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
first=${methods%% *}
first_seed=${seeds%% *}
# 1. the features of every (data set, ratio), one run each
for s in $sets; do for r in $ratios; do
  plan_run "$out/$s-$r-$first-seed$first_seed" "experiment=${first}_$s" "data.conflict_ratio=$r" \
    "seed=$first_seed" "${@:1}"
done; done | run_plans "$out" "$par" "$threads"
# 2. everything else (finished runs are skipped)
for s in $sets; do for r in $ratios; do for seed in $seeds; do for m in $methods; do
  plan_run "$out/$s-$r-$m-seed$seed" "experiment=${m}_$s" "data.conflict_ratio=$r" "seed=$seed" "${@:1}"
done; done; done; done | run_plans "$out" "$par" "$threads"
alseg summarize "$out"/*/ | tee "$out/table.md"
