#!/usr/bin/env bash
# README results of active domain adaptation on the synthetic data: one strategy per run
# at the same budget; round 0 of every run is the source-only model (same seed, same
# stage 0). TASK=cls: shapes classification (experiment=lamda_synthetic); TASK=seg:
# synthetic scenes with a label shift (experiment=ripu_synthetic, 3x3 windows, pixel
# answers, DANN for every strategy since aada needs the discriminator).
#   TASK=cls SEEDS="0 1 2" STRATEGIES="random entropy aada clue eada lamda" \
#     bash scripts/adaptation.sh [OUT_DIR] [PARALLEL] [extra overrides...]
set -euo pipefail
task=${TASK:-cls}
out=${1:-runs/adaptation-$task}
par=${2:-1}
shift $(( $# > 2 ? 2 : $# )) || true
extra="$*"
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
if [ "$task" = cls ]; then
  strategies=${STRATEGIES:-random entropy aada clue eada lamda}
  base="experiment=lamda_synthetic"
else
  strategies=${STRATEGIES:-random entropy aada clue eada lamda ripu}
  base="experiment=ripu_synthetic adaptation.alignment=dann adaptation.disc_hidden=[256,256]"
fi
mkdir -p "$out"
for seed in $seeds; do
  for s in $strategies; do
    d="$out/$s-seed$seed"
    params=""
    case $s in clue|lamda) params="active.strategy_params.max_candidates=5000" ;; esac
    if [ -f "$d/state.json" ]; then
      grep -q '"done"' "$d/state.json" || echo "resume $d"
    else
      echo "run $base active.strategy=$s $params seed=$seed run_dir=$d logger=none trainer.enable_progress_bar=false $extra"
    fi
  done
done | xargs -P "$par" -L 1 env OMP_NUM_THREADS="$threads" alseg >> "$out/log.txt" 2>&1
alseg summarize "$out"/*/ | tee "$out/table.md"
alseg summarize --metric acc "$out"/*/ | tee "$out/table_acc.md"
