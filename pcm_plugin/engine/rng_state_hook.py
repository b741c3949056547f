"""Save and restore the random generators with every checkpoint.

mmengine seeds the generators once when a run starts, so a resumed run
draws other dropout masks and CapDec noise than the uninterrupted one and
ends on other weights. This hook stores the torch (CPU and CUDA), numpy
and Python generator states in each checkpoint and restores them when a
run resumes, so an epoch-based run resumed from its checkpoint continues
bit for bit (test: tests/test_engine/test_exact_resume.py).

The states are plain tensors, numpy arrays and tuples: they load with the
safe (weights-only) checkpoint loader.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from pcm_plugin.registry import HOOKS

KEY = 'rng_states'


def rng_states() -> dict:
    """The current states of every generator a training run draws from."""
    states = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                  python=random.getstate())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(_as_tuple(states['python']))
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def _as_tuple(value):
    # Python's state is a nested tuple; keep it one after a round trip.
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Checkpoint the random generators so that ``--resume`` is exact, and
    keep validation from drawing on the training run's stream."""

    priority = 'VERY_LOW'  # restore after every other hook has loaded

    def before_val(self, runner) -> None:
        # Validation draws from the global generator too (the data loader
        # seeds itself); the uninterrupted run must not differ from a
        # resumed one by that, so validation gets the stream back.
        self._before_val = rng_states()

    def after_val(self, runner) -> None:
        if getattr(self, '_before_val', None) is not None:
            set_rng_states(self._before_val)
            self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if KEY in checkpoint:
            set_rng_states(checkpoint[KEY])
