#!/usr/bin/env bash
# Results (docs/results.md) on real photos: LabelMeFacade (945 street photos of facades, 9 classes;
# data=labelmefacade, alseg's fixed re-split: pool 600 / val 100 / test 245), 96x128 pixels
# (centre crop of the aspect-kept resize), ~48 SLIC regions per image, 100 clicks a round,
# 5 rounds (100..500 clicks), DeepLabV3+ ResNet-18 from random weights, 10 epochs a round;
# each method with its CPU-scale experiment settings (the *_synthetic experiments hold the
# method settings; data=labelmefacade replaces their data), 3 seeds, and the full-supervision
# reference. Then the paired report against random (alseg report --baseline --full).
#   LMF_ROOT=../shared/data/labelmefacade bash scripts/real_photos.sh [OUT_DIR] [PARALLEL]
#   SEEDS="0 1 2" SETTINGS="random bvsb" THREADS=1 bash scripts/real_photos.sh runs/real 2
# PARALLEL runs share the cores (THREADS each, default cores / PARALLEL; tables in docs/results.md
# ran 2 in parallel with THREADS=1). Finished runs are skipped and killed ones resumed, so
# the script can be started again after a stop.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/real_photos}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
root=$(realpath "${LMF_ROOT:-../shared/data/labelmefacade}")
# every round's checkpoint is kept: the diagnosis re-scores the pool with the model of the
# round that selected (scripts/real_photos_diagnosis.py)
d="data=labelmefacade data.root=$root active.keep_checkpoints=5"
declare -A settings=(
  [random]="$d active.strategy=random"
  [entropy]="$d active.strategy=entropy"
  [bvsb]="$d active.strategy=bvsb"
  [classbal]="$d active.strategy=classbal"
  [mulactseg]="experiment=mulactseg_synthetic $d"
  [adaptive-sieve]="experiment=adaptive_superpixel_synthetic $d"
)
names=${SETTINGS:-random entropy bvsb classbal mulactseg adaptive-sieve}
# the region maps once, before runs that share the cache start
OMP_NUM_THREADS=$threads alseg regions $d >> "$(mkdir -p "$out" && echo "$out")/log.txt" 2>&1
for seed in $seeds; do
  for name in $names; do
    plan_run "$out/$name-seed$seed" ${settings[$name]} seed=$seed
  done
  plan_run "$out/full/full-seed$seed" $d active.full_supervision=true seed=$seed
done | run_plans "$out" "$par" "$threads"
runs=()
for name in $names; do runs+=("$out/$name"-seed*/); done
alseg report "${runs[@]}" --baseline random --full "$out"/full/*/ --out "$out/report" | tee "$out/report.txt"
