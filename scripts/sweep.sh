#!/usr/bin/env bash
# Create a W&B sweep and start one agent per GPU of this node.
#   bash scripts/sweep.sh conf/sweep/strategies.yaml            # new sweep
#   SWEEP_ID=entity/project/abc123 bash scripts/sweep.sh          # more agents for a sweep
# Each agent runs `alseg run key=value ...` (the sweep's `command`), one run at a time.
# Agents need W&B online (`wandb login`); without it use `alseg sweep FILE --local`.
set -euo pipefail
if [ -z "${SWEEP_ID:-}" ]; then
  file=${1:?usage: scripts/sweep.sh SWEEP_FILE}
  SWEEP_ID=$(wandb sweep --project "${WANDB_PROJECT:-alseg}" "$file" 2>&1 | sed -n 's/.*wandb agent \(.*\)$/\1/p' | tail -1)
  echo "sweep: $SWEEP_ID"
fi
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "$gpus" -ge 1 ] || gpus=1
for i in $(seq 0 $((gpus - 1))); do
  CUDA_VISIBLE_DEVICES=$i WANDB_MODE=online wandb agent "$SWEEP_ID" &
done
wait
