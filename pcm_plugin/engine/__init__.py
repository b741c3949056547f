"""Training-loop pieces: LR schedule, checkpoint loading, CPU DDP."""
from .checkpoint import load_local_checkpoint, register_checkpoint_loader
from .cpu_ddp import CPUCompatDDP
from .noam_lr import NoamLR
from .rng_state_hook import RNGStateHook

__all__ = [
    'CPUCompatDDP', 'NoamLR', 'RNGStateHook', 'load_local_checkpoint',
    'register_checkpoint_loader'
]
