"""Local checkpoint loading that never runs code from a file by default.

torch 2.6 switched ``torch.load`` to ``weights_only=True``, which mmengine
0.10.7 checkpoints fail: their ``message_hub`` holds ``HistoryBuffer``
objects and numpy arrays. Instead of falling back to full unpickling (which
executes whatever a file names), we keep ``weights_only=True`` and allow the
few *data-only* types those checkpoints contain (:data:`SAFE_GLOBALS`:
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

import torch
from mmengine.runner.checkpoint import CheckpointLoader

TRUST_ENV = 'PCM_TRUST_CHECKPOINT'


def safe_globals() -> List:
    """The data-only types mmengine checkpoints hold, allowed under
    ``weights_only=True`` (their unpickling builds data, calls nothing
    else: a callable the file returns can still not be invoked)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtypes = {type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray,
            np.dtype, HistoryBuffer, getattr, *sorted(dtypes, key=str)]


def trust_checkpoints(trust: bool = True) -> None:
    """Allow (or forbid again) full unpickling of checkpoints that need it,
    for this process and the processes it starts."""
    if trust:
        os.environ[TRUST_ENV] = '1'
    else:
        os.environ.pop(TRUST_ENV, None)


def _trusted() -> bool:
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
        if _trusted():
            return torch.load(filename, map_location=map_location,
                              weights_only=False)
        first = str(err).strip().splitlines()[0][:200]
        raise pickle.UnpicklingError(
            f'checkpoint {filename} was refused: loading it would need full '
            f'unpickling, which can run code from the file ({first}). Load '
            'only files you trust; if you trust this one, pass '
            f'--trust-checkpoint to the tool (or set {TRUST_ENV}=1)'
        ) from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise RuntimeError(
            f'checkpoint {filename} could not be read ({err}); it is '
            'truncated or not a checkpoint') from None


def _load_safetensors(filename: str, map_location=None) -> dict:
    """A released model's weights (tools/publish_model.py): plain tensors,
    nothing to unpickle."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
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
