#!/usr/bin/env bash
# Train on a Slurm cluster (srun starts one task per GPU; mmengine's
# `--launcher slurm` reads the rank and world size from Slurm).
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#        bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [extra args]
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [extra args]" >&2
    echo "  env: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS, PYTHON" >&2
    exit 2
fi
source "$(dirname "$0")/_python.sh"  # ROOT, PYTHON, require_positive_int
PARTITION=$1
JOB_NAME=$2
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
require_positive_int GPUS "$GPUS" "tasks in all"
require_positive_int GPUS_PER_NODE "$GPUS_PER_NODE" "tasks per node"
require_positive_int CPUS_PER_TASK "$CPUS_PER_TASK" "CPUs per task"
CONFIG=$3
EXTRA=("${@:4}")
if [ "${#EXTRA[@]}" -gt 0 ] && [[ "${EXTRA[0]}" != --* ]]; then
    EXTRA=(--work-dir "${EXTRA[0]}" "${EXTRA[@]:1}")  # [WORK_DIR]
fi
PYTHONPATH="$ROOT":${PYTHONPATH:-} \
srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm \
    "${EXTRA[@]}"
