"""Training-loop pieces: LR schedule, checkpoint loading, resumable loop,
batch rule, CPU DDP, mixed precision, the tools' Runner (the tools'
command-line plumbing is :mod:`pcm_plugin.cli`)."""
from .amp import AutocastTestLoop, BF16OptimWrapper
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .checkpoint import load_local_checkpoint, register_checkpoint_loader
from .cpu_ddp import CPUCompatDDP
from .noam_lr import NoamLR
from .resumable_loop import ResumableEpochBasedTrainLoop
from .rng_state_hook import RNGStateHook

__all__ = [
    'AtomicCheckpointHook', 'AutocastTestLoop', 'BF16OptimWrapper',
    'CPUCompatDDP', 'NoamLR', 'RNGStateHook',
    'ResumableEpochBasedTrainLoop',
    'load_local_checkpoint', 'register_checkpoint_loader'
]
