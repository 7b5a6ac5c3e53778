#!/usr/bin/env bash
# Data filtering for language models through `alseg prune` (docs/results.md): for each seed
# one scoring run of the embedded instruction set (experiment=prune_text), then the same
# initial model fine-tuned on the share each rule keeps, and on the full data; a table in
# OUT/report (test loss; `alseg summarize OUT/*/ --metric em_all` for exact match).
#   SEEDS="0 1 2" KEEPS="0.1 0.3 0.5" RULES="random ppl_low ..." \
#     bash scripts/text_prune.sh [OUT_DIR] [PARALLEL] [overrides...]
# The same protocol as scripts/text_filtering.py (which also writes the paired tables).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/text_prune}
par=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
seeds=${SEEDS:-0 1 2}
keeps=${KEEPS:-0.1 0.3 0.5}
rules=${RULES:-random ppl_low ppl_middle ppl_high ifd el2n semdedup less}
threads=${THREADS:-1}
for seed in $seeds; do
  prune_plan "$out/score-seed$seed" score experiment=prune_text "seed=$seed" "${@:1}"
done | run_plans "$out" "$par" "$threads"
for seed in $seeds; do
  sc="scores=$out/score-seed$seed"
  prune_plan "$out/full-seed$seed" retrain experiment=prune_text "$sc" rule=random keep=1.0 "seed=$seed" "${@:1}"
  for k in $keeps; do
    for r in $rules; do
      prune_plan "$out/${r//\//-per-}-keep$k-seed$seed" retrain experiment=prune_text "$sc" "rule=$r" "keep=$k" "seed=$seed" "${@:1}"
    done
  done
done | run_plans "$out" "$par" "$threads"
alseg report "$out"/*/ --out "$out/report"
cat "$out/report/table.md"
