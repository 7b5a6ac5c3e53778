#!/usr/bin/env bash
# Results (docs/results.md) of a representation before the first label, on the real photos of
# scripts/real_photos.sh (same data, scale, seeds and OUT_DIR): SimCLR pre-training of the
# encoder on the pool (alseg pretrain, once), then random, bvsb, MulActSeg and
# [typiclust,bvsb] whose every round starts the encoder from it, each paired against random
# without pre-training, and the full-supervision line from the encoder (OUT/full_pretrained;
# its report: OUT/report_full_pretrained); reports against random weights
# (OUT/report_pretrained), against random on the same encoder
# (OUT/report_pretrained_same_encoder) and MulActSeg against itself from random weights
# (OUT/report_mulactseg_encoders).
#   LMF_ROOT=../shared/data/labelmefacade bash scripts/real_photos_pretrain.sh [OUT_DIR] [PARALLEL]
# SETTINGS= picks a subset of the four settings, FULL_SEEDS= the seeds of the full line.
# Finished runs are skipped and killed ones resumed (the pre-training too).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-runs/real_photos}
par=${2:-1}
seeds=${SEEDS:-0 1 2}
full_seeds=${FULL_SEEDS-$seeds}
threads=${THREADS:-$(( $(nproc) / par ))}; [ "$threads" -ge 1 ] || threads=1
root=$(realpath "${LMF_ROOT:-../shared/data/labelmefacade}")
d="data=labelmefacade data.root=$root active.keep_checkpoints=5"
epochs=${PRETRAIN_EPOCHS:-40}
mkdir -p "$out"
# 1. the pre-trained encoder (its run dir is named after the pool and the settings)
weights=$(OMP_NUM_THREADS=$(( threads * par )) alseg pretrain $d "pretrain.epochs=$epochs" \
  logger=none trainer.enable_progress_bar=false 2>>"$out/log.txt" | sed -n 's/^model.encoder_weights=//p')
echo "pre-trained encoder: $weights" | tee -a "$out/log.txt"
p="model.encoder_weights=$weights"
declare -A settings=(
  [random-pretrained]="$d $p active.strategy=random"
  [bvsb-pretrained]="$d $p active.strategy=bvsb"
  [typiclust-bvsb-pretrained]="$d $p active.strategy=[typiclust,bvsb]"
  [mulactseg-pretrained]="experiment=mulactseg_synthetic $d $p"
)
names=${SETTINGS:-random-pretrained bvsb-pretrained mulactseg-pretrained typiclust-bvsb-pretrained}
for seed in $seeds; do
  for name in $names; do
    plan_run "$out/$name-seed$seed" ${settings[$name]} seed=$seed
  done
  case " $full_seeds " in *" $seed "*)
    plan_run "$out/full_pretrained/full-pretrained-seed$seed" $d $p active.full_supervision=true seed=$seed ;;
  esac
done | run_plans "$out" "$par" "$threads"
runs=()
for name in random $names; do runs+=("$out/$name"-seed*/); done
alseg report "${runs[@]}" --baseline random --full "$out"/full/*/ --out "$out/report_pretrained" | tee "$out/report_pretrained.txt"
# the same encoder as the baseline, and MulActSeg against itself from random weights
case " $names " in *" random-pretrained "*)
  same=(); for name in $names; do same+=("$out/$name"-seed*/); done
  alseg report "${same[@]}" --baseline random-pretrained \
    --out "$out/report_pretrained_same_encoder" | tee "$out/report_pretrained_same_encoder.txt" ;;
esac
case " $names " in *" mulactseg-pretrained "*)
  alseg report "$out"/mulactseg-seed*/ "$out"/mulactseg-pretrained-seed*/ --baseline mulactseg \
    --out "$out/report_mulactseg_encoders" | tee "$out/report_mulactseg_encoders.txt" ;;
esac
alseg report "$out"/full/*/ "$out"/full_pretrained/*/ --out "$out/report_full_pretrained" \
  | tee "$out/report_full_pretrained.txt"
