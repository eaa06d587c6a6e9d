#!/bin/bash
# TGA-ZSR on 2 nodes x 8 GPUs with SLURM: one launcher per node, accelerate starts the 8 processes.
# sbatch docs/slurm_multi_node.sh   (from the repository root; adjust partition, account, paths)
#SBATCH --job-name=tgazsr
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one accelerate launcher per node
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64           # 8 dataloader workers per GPU
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:TERM@120          # SIGTERM two minutes before the limit: tgazsr saves a checkpoint

set -euo pipefail
export MAIN_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MAIN_PORT=29500
export GPUS_PER_NODE=8
export HF_HOME=${HF_HOME:-$PWD/.hf}  # a shared filesystem: datasets and weights download once

# Global batch = per-device batch x GPUs: 8 x 16 = 128, the reference batch.
srun --kill-on-bad-exit=1 bash -c 'accelerate launch \
    --config_file accelerate_configs/multi_node.yaml \
    --num_machines "$SLURM_NNODES" \
    --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
    --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$MAIN_NODE" \
    --main_process_port "$MAIN_PORT" \
    -m tgazsr.cli train recipes/tga_zsr.yaml \
    --per_device_train_batch_size 8 --bf16 true --fp16 false \
    --output_dir outputs/clip-vit-b32-tga-zsr-multinode \
    --resume_from_checkpoint true'
