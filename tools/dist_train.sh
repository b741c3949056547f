#!/usr/bin/env bash
# Distributed train with torchrun, on GPUs (nccl) or CPU processes (gloo).
# Usage: bash tools/dist_train.sh CONFIG NPROC [extra args]
# Env: PYTHON (python), NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1)
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: bash tools/dist_train.sh CONFIG NPROC [extra args]" >&2
    echo "  env: PYTHON, NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1)" >&2
    exit 2
fi
source "$(dirname "$0")/_python.sh"  # ROOT, PYTHON, require_positive_int
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
# torchrun's own words for "one per GPU/CPU core" pass as they are.
[[ "$NPROC" =~ ^(auto|gpu|cpu)$ ]] ||
    require_positive_int NPROC "$NPROC" "processes per node, or auto"
require_positive_int NNODES "$NNODES" "nodes"
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHONPATH="$ROOT":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
