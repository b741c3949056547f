"""Local checkpoint loading that never runs code from a file by default.

torch 2.6 switched ``torch.load`` to ``weights_only=True``, which mmengine
0.10.7 checkpoints fail: their ``message_hub`` holds ``HistoryBuffer``
objects and numpy arrays. Instead of falling back to full unpickling (which
executes whatever a file names), we keep ``weights_only=True`` and allow the
few *data-only* types those checkpoints contain (:func:`safe_globals`:
numpy arrays, dtypes and scalars, mmengine's ``HistoryBuffer``), so
``--resume``, ``load_from``, ``tools/test.py`` and the inference API load
them safely. A file that needs anything else is refused with a message
naming it; only an explicit trust switch (``--trust-checkpoint`` in the
tools, :func:`trust_checkpoints` or ``PCM_TRUST_CHECKPOINT=1``) unpickles
it fully.
"""
import os
import os.path as osp
import pickle
from typing import List

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from safetensors import SafetensorError
from safetensors.torch import load_file

try:
    from numpy._core import multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray

TRUST_ENV = 'PCM_TRUST_CHECKPOINT'


# The only attributes a checkpoint may look up: mmengine pickles a
# ``HistoryBuffer``'s statistics table as ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
_HISTORY_BUFFER_PATH = 'mmengine.logging.history_buffer.HistoryBuffer'
_HISTORY_BUFFER_STATE = {'max_length', '_log_history', '_count_history',
                         'statistics_methods', '_statistics_methods'}


class _CheckedHistoryBuffer(HistoryBuffer):
    """What a checkpoint's ``HistoryBuffer`` is unpickled as.

    mmengine's ``__setstate__`` updates the instance's ``__dict__`` with
    whatever the file holds and the class-wide statistics table with the
    file's functions; unchecked, a file could store a callable as the
    instance's ``__setstate__`` and have the next BUILD call it. This
    class accepts only the data attributes mmengine writes, then turns
    the object into a plain ``HistoryBuffer`` (which is not itself
    allowlisted, so no later BUILD can reach it).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__class__ = HistoryBuffer

    def __setstate__(self, state) -> None:
        _check_history_buffer_state(state)
        super().__setstate__(state)
        self.__class__ = HistoryBuffer


def _check_history_buffer_state(state) -> None:
    if not isinstance(state, dict) or not set(state) <= _HISTORY_BUFFER_STATE:
        keys = sorted(state) if isinstance(state, dict) else type(state)
        raise pickle.UnpicklingError(
            f'HistoryBuffer state {keys} is not mmengine\'s data '
            f'({sorted(_HISTORY_BUFFER_STATE)})')
    for key in ('_log_history', '_count_history'):
        value = state.get(key)
        if value is not None and not (isinstance(value, np.ndarray)
                                      and value.dtype.kind in 'biuf'):
            raise pickle.UnpicklingError(
                f'HistoryBuffer.{key} is not a numeric array')
    statistics = _history_buffer_statistics()
    for key in ('statistics_methods', '_statistics_methods'):
        methods = state.get(key, {})
        if not isinstance(methods, dict) or any(
                statistics.get(name) is not fn
                for name, fn in methods.items()):
            raise pickle.UnpicklingError(
                f'HistoryBuffer.{key} names other functions than '
                f'mmengine\'s {HISTORY_BUFFER_STATISTICS}')


def _history_buffer_statistics() -> dict:
    return {name: getattr(HistoryBuffer, name)
            for name in HISTORY_BUFFER_STATISTICS}


def _history_buffer_statistic(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling.

    A real ``getattr`` would hand a file any attribute of any object it
    holds (``__self__`` of a builtin is the ``builtins`` module, and from
    there ``eval``). This one answers exactly the lookups mmengine
    pickles, ``getattr(HistoryBuffer, 'mean')`` and the like, and
    refuses every other.
    """
    if owner in (HistoryBuffer, _CheckedHistoryBuffer) and \
            name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'the file looks up attribute {name!r} of '
        f'{getattr(owner, "__name__", type(owner).__name__)}; a checkpoint '
        'may only name HistoryBuffer statistics')


def safe_globals() -> List:
    """The globals a checkpoint may name under ``weights_only=True``.

    Each builds data and calls nothing else, as torch's guidance on
    ``add_safe_globals`` asks (an allowlisted class can be instantiated
    and have its state set, an allowlisted function called with any
    arguments the file chooses): numpy's array, scalar and dtype
    constructors, and mmengine's ``HistoryBuffer`` through
    :class:`_CheckedHistoryBuffer`. ``getattr`` itself is never allowed;
    :func:`_history_buffer_statistic` answers in its place.

    Returns:
        list: entries for :func:`torch.serialization.safe_globals`.
    """
    dtypes = {type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray,
            np.dtype, *sorted(dtypes, key=str),
            (_CheckedHistoryBuffer, _HISTORY_BUFFER_PATH),
            (_history_buffer_statistic, 'builtins.getattr')]


def trust_checkpoints(trust: bool = True) -> None:
    """Allow (or forbid again) full unpickling of checkpoints that need it,
    for this process and the processes it starts."""
    if trust:
        os.environ[TRUST_ENV] = '1'
    else:
        os.environ.pop(TRUST_ENV, None)


def checkpoints_trusted() -> bool:
    """Whether full unpickling is allowed (the trust switch is on)."""
    return os.environ.get(TRUST_ENV, '') not in ('', '0')


def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint written by mmengine or plain torch, or a
    released model's ``.safetensors`` weights, safely.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Passed to :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: No such file.
        pickle.UnpicklingError: The file needs code execution to load (or
            is not a checkpoint) and checkpoints are not trusted.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename} not found: check `load_from`, `--resume` '
            'or the CHECKPOINT argument of tools/test.py')
    if filename.endswith('.safetensors'):
        return _load_safetensors(filename, map_location)
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as err:
        if checkpoints_trusted():
            return torch.load(filename, map_location=map_location,
                              weights_only=False)
        raise pickle.UnpicklingError(
            f'checkpoint {filename} was refused: loading it would need full '
            f'unpickling, which can run code from the file '
            f'({_unpickler_reason(err)}). Load only files you trust; if you '
            'trust this one, pass --trust-checkpoint to the tool (or set '
            f'{TRUST_ENV}=1)') from None
    except Exception as err:  # noqa: BLE001  an untrusted file's any fault
        # An allowlisted constructor called with arguments the file chose
        # raises whatever it raises (TypeError, AttributeError, ...).
        raise RuntimeError(
            f'checkpoint {filename} could not be read '
            f'({type(err).__name__}: {_first_line(str(err))}); it is '
            'truncated, damaged or not a checkpoint') from None


def _first_line(text: str, limit: int = 200) -> str:
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ''


def _unpickler_reason(err: Exception) -> str:
    """torch's refusal minus its advice to turn ``weights_only`` off."""
    text = str(err)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1].split('Check the documentation')[0]
    return ' '.join(text.split())[:300]


def _load_safetensors(filename: str, map_location=None) -> dict:
    """A released model's weights (tools/publish_model.py): plain tensors,
    nothing to unpickle."""
    device = map_location if isinstance(map_location, str) else 'cpu'
    try:
        return dict(state_dict=load_file(filename, device=device))
    except (SafetensorError, OSError) as err:
        raise RuntimeError(
            f'checkpoint {filename} could not be read ({err}); it is '
            'truncated or not a safetensors file') from None


def register_checkpoint_loader() -> None:
    """Make :func:`load_local_checkpoint` mmengine's loader for local paths."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


def check_checkpoint_matches(model, filename: str) -> None:
    """Refuse a checkpoint that does not fit ``model`` before using it.

    mmengine loads non-strictly: a checkpoint for another vocabulary or
    backbone loads partly (mismatched tensors are skipped with a warning)
    and the model captions garbage with exit code 0. Every tensor of the
    model must be in the checkpoint with its shape; extra tensors (e.g. a
    mix-up model's text projection given to a Base model) are allowed.

    Raises:
        ValueError: naming the file, the first mismatches and the likely
            cause.
    """
    state = load_local_checkpoint(filename, map_location='cpu')
    state = state.get('state_dict', state) if isinstance(state, dict) \
        else state
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
             for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(
            f'checkpoint {filename} does not fit the model: '
            f'{len(wrong)} tensors have other shapes (checkpoint vs model: '
            f'{"; ".join(wrong[:3])}); it was trained with another '
            'vocabulary (tokenizer) or CLIP backbone than the config')
    if missing:
        raise ValueError(
            f'checkpoint {filename} lacks {len(missing)} of the model\'s '
            f'{len(expected)} tensors (e.g. {missing[:3]}); it is not a '
            'checkpoint of this model/config')
