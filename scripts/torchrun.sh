#!/usr/bin/env bash
# Multi-GPU / multi-node run with torchrun: one process per GPU, Lightning's DDP.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS=4 bash scripts/torchrun.sh active.strategy=classbal
# Run the same command on every node with its NODE_RANK. Every process runs the round loop
# and applies the same label updates; pool scoring is sharded over all GPUs; only global
# rank 0 writes the run dir, so run_dir must be on a shared file system and the same for
# all processes (set it explicitly, as below).
set -euo pipefail
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
RUN_DIR=${RUN_DIR:-runs/torchrun-$(date +%Y%m%d-%H%M%S)}
exec torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m alseg.cli run run_dir="$RUN_DIR" \
  trainer.accelerator=gpu trainer.devices="$GPUS" trainer.num_nodes="$NNODES" \
  trainer.strategy=ddp trainer.precision=bf16-mixed "$@"
