"""Local checkpoint loading that works with torch >= 2.6.

torch 2.6 switched ``torch.load`` to ``weights_only=True``. mmengine 0.10.7
checkpoints hold a ``message_hub`` with ``HistoryBuffer`` objects and numpy
arrays, so ``--resume``, ``load_from`` and ``tools/test.py CHECKPOINT`` fail
with ``UnpicklingError: Weights only load failed``. We register a loader for
local paths that first tries the safe mode and, only for files that need it,
falls back to full unpickling. Checkpoints are code: load only your own or
ones you trust (the same contract as torch < 2.6).
"""
import os.path as osp
import pickle

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint file written by mmengine or plain torch.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Passed to :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename} not found: check `load_from`, `--resume` '
            'or the CHECKPOINT argument of tools/test.py')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError:
        # mmengine's message_hub/HistoryBuffer: a trusted local file.
        return torch.load(filename, map_location=map_location,
                          weights_only=False)


def register_checkpoint_loader() -> None:
    """Make :func:`load_local_checkpoint` mmengine's loader for local paths."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
