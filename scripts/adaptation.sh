#!/usr/bin/env bash
# Results (docs/results.md) of active domain adaptation on the synthetic data: one strategy per run
# at the same budget; round 0 of every run is the source-only model (same seed, same
# stage 0). TASK=cls: shapes classification (experiment=lamda_synthetic); TASK=seg:
# synthetic scenes with a label shift (experiment=ripu_synthetic, 3x3 windows, pixel
# answers, DANN for every strategy since aada needs the discriminator).
#   TASK=cls SEEDS="0 1 2" STRATEGIES="random entropy aada clue eada lamda" \
#     bash scripts/adaptation.sh [OUT_DIR] [PARALLEL] [extra overrides...]
# The README's segmentation table ran at a smaller CPU scale (~7 min a run, 2 at a time):
#   TASK=seg bash scripts/adaptation.sh runs/adaptation-seg 2 data.image_size=48 trainer.max_steps=100
# and its LAMDA diagnosis with a milder appearance shift and a longer source-only stage 0
# (THREADS: OMP threads a run, default cores / PARALLEL; results repeat for a given count):
#   THREADS=1 TASK=cls STRATEGIES="lamda random" bash scripts/adaptation.sh \
#     runs/v2/lamda-diag/gap0.25-init600 2 data.gap=0.25 active.init_steps=600
set -euo pipefail
source "$(dirname "$0")/lib.sh"
task=${TASK:-cls}
out=${1:-runs/adaptation-$task}
par=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
if [ "$task" = cls ]; then
  strategies=${STRATEGIES:-random entropy aada clue eada lamda}
  base="experiment=lamda_synthetic"
else
  strategies=${STRATEGIES:-random entropy aada clue eada lamda ripu}
  base="experiment=ripu_synthetic adaptation.alignment=dann adaptation.disc_hidden=[256,256]"
fi
for seed in $seeds; do
  for s in $strategies; do
    params=""
    case $s in clue|lamda) params="active.strategy_params.max_candidates=5000" ;; esac
    plan_run "$out/$s-seed$seed" $base active.strategy=$s $params seed=$seed "$@"
  done
done | run_plans "$out" "$par" "$threads"
alseg summarize "$out"/*/ | tee "$out/table.md"
alseg summarize --metric acc "$out"/*/ | tee "$out/table_acc.md"
