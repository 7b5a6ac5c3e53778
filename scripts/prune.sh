#!/usr/bin/env bash
# Results (docs/results.md) of data pruning: for each data set (shapes classification, synthetic
# scenes segmentation) one scoring run (3 seeds averaged), then models retrained from
# scratch on the kept images (same iterations as the full run) for each rule and kept
# fraction, 3 seeds, and the full data. A table and a plot in OUT/report.
#   SEEDS="0 1 2" SETS="shapes synthetic" KEEPS="0.7 0.5 0.3" \
#     BY="el2n grand forgetting dyn_unc" BALANCED="" bash scripts/prune.sh [OUT_DIR] [PARALLEL] [overrides...]
# BALANCED: scores that also get the class-balanced hardest-first rule (hardest_balanced).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/prune}
par=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
seeds=${SEEDS:-0 1 2}
sets=${SETS:-shapes synthetic}
keeps=${KEEPS:-0.7 0.5 0.3}
scores=${BY-el2n grand forgetting dyn_unc}
balanced=${BALANCED:-}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
# 1. the scores of each data set (3 scoring seeds, averaged)
for s in $sets; do
  prune_plan "$out/$s-score" score "experiment=prune_$s" "${@:1}"
done | run_plans "$out" "$par" "$threads"
# 2. retrained models
for seed in $seeds; do for s in $sets; do  # seed by seed: a partial run has whole seeds
  sc="scores=$out/$s-score"
  prune_plan "$out/$s-full-keep1-seed$seed" retrain "experiment=prune_$s" rule=random keep=1.0 "seed=$seed" "${@:1}"
  for k in $keeps; do
    for by in $scores; do
      prune_plan "$out/$s-hardest-$by-keep$k-seed$seed" retrain "experiment=prune_$s" "$sc" rule=hardest "by=$by" "keep=$k" "seed=$seed" "${@:1}"
    done
    for by in $balanced; do
      prune_plan "$out/$s-hardest_balanced-$by-keep$k-seed$seed" retrain "experiment=prune_$s" "$sc" rule=hardest_balanced "by=$by" "keep=$k" "seed=$seed" "${@:1}"
    done
    # CCS with the score CCS uses: the probability margin (aum_prob)
    prune_plan "$out/$s-ccs-aum_prob-keep$k-seed$seed" retrain "experiment=prune_$s" "$sc" rule=ccs by=aum_prob "keep=$k" "seed=$seed" "${@:1}"
    prune_plan "$out/$s-random-keep$k-seed$seed" retrain "experiment=prune_$s" rule=random "keep=$k" "seed=$seed" "${@:1}"
  done
done; done | run_plans "$out" "$par" "$threads"
alseg report "$out"/*/ --out "$out/report"
cat "$out/report/table.md"
