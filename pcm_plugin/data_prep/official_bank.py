# Copyright (c) pcm_plugin authors. MIT licence.
"""Import the official PCM-Net concept banks without running pickled code.

``coco400_embeddings_ViT-{B32,L14}_with_ensemble.pickle`` are plain pickles
of ``(words, fp16 tensor)``. A plain ``pickle.load`` would run whatever
callables the file names; ``torch.load(weights_only=True)`` refuses the
files because the tensor is rebuilt through ``torch.storage
._load_from_bytes``, whose real implementation unpickles the inner bytes
with ``weights_only=False``.

:class:`RestrictedBankUnpickler` admits exactly the three globals these
files reference (found with ``pickletools.dis``):

* ``torch._utils._rebuild_tensor_v2``: view a storage as a tensor;
* ``torch.storage._load_from_bytes``: replaced by :func:`load_storage_bytes`,
  which loads the inner ``torch.save`` bytes with ``weights_only=True``
  (that inner pickle names only ``torch.HalfStorage``, which torch's own
  weights-only unpickler allows);
* ``collections.OrderedDict``: the tensor's (empty) backward hooks.

Any other global is refused with an error naming it (``module.name``), so a
crafted file cannot run a command.
"""
import collections
import io
import os.path as osp
import pickle
import warnings
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch._utils

from pcm_plugin.utils.fileio import file_sha256

from .safe_pickle import AdmittedGlobalsUnpickler, UnsafePickleError


def load_storage_bytes(data: bytes):
    """Stand-in for ``torch.storage._load_from_bytes``, weights-only.

    Args:
        data (bytes): A legacy ``torch.save`` stream of one storage.

    Returns:
        torch.TypedStorage: on CPU.
    """
    with warnings.catch_warnings():
        # TypedStorage deprecation: the storage only lives until the
        # tensor is rebuilt from it.
        warnings.simplefilter('ignore', UserWarning)
        return torch.load(io.BytesIO(data), map_location='cpu',
                          weights_only=True)


def _admitted_globals() -> Dict[Tuple[str, str], object]:
    return {
        ('torch._utils', '_rebuild_tensor_v2'):
        torch._utils._rebuild_tensor_v2,
        ('torch.storage', '_load_from_bytes'): load_storage_bytes,
        ('collections', 'OrderedDict'): collections.OrderedDict,
    }


class RestrictedBankUnpickler(AdmittedGlobalsUnpickler):
    """Unpickler that resolves only the concept banks' globals.

    Args:
        file: A binary file object.
        source (str): File name for error messages.
    """

    def __init__(self, file, *, source: str):
        super().__init__(file, admitted=_admitted_globals(), source=source,
                         what='a concept-bank pickle')


def read_official_bank(path: str) -> Tuple[List[str], np.ndarray]:
    """Safely read an official ``(words, embeddings)`` pickle.

    Args:
        path (str): e.g. ``coco400_embeddings_ViT-B32_with_ensemble.pickle``.

    Returns:
        tuple: ``words`` (list of C str) and ``embeddings`` (C, D) in the
        file's dtype (float16 for the official files), bit-exact.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'official concept bank {path} not found')
    with open(path, 'rb') as f:
        try:
            obj = RestrictedBankUnpickler(f, source=path).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, RuntimeError,
                ValueError, TypeError, AttributeError) as exc:
            raise UnsafePickleError(f'{path}: not a readable concept-bank '
                                    f'pickle ({type(exc).__name__}: {exc})'
                                    ) from exc
    if not (isinstance(obj, tuple) and len(obj) == 2):
        raise ValueError(f'{path}: expected a pickled (words, embeddings) '
                         f'tuple, got {type(obj).__name__}')
    words, embeddings = obj
    if not (isinstance(words, list) and all(isinstance(w, str)
                                            for w in words)):
        raise ValueError(f'{path}: the first element must be a list of '
                         'words (str)')
    if not (isinstance(embeddings, torch.Tensor) and embeddings.ndim == 2
            and embeddings.is_floating_point()):
        raise ValueError(f'{path}: the second element must be a 2-D float '
                         f'tensor, got {type(embeddings).__name__}')
    if embeddings.shape[0] != len(words):
        raise ValueError(f'{path}: {len(words)} words but embeddings of '
                         f'shape {tuple(embeddings.shape)}')
    return words, embeddings.detach().cpu().numpy().copy()


def official_bank_meta(path: str, embeddings: np.ndarray) -> Dict:
    """The ``meta`` recorded for an imported official bank."""
    name = osp.basename(path)
    return dict(
        source='tools/build_concepts.py import-official',
        original_file=name, original_sha256=file_sha256(path),
        original_dtype=str(embeddings.dtype),
        clip_model='ViT-L/14' if 'L14' in name else
        'ViT-B/32' if 'B32' in name else 'unknown',
        templates='prompt ensemble per the file name; exact templates not '
        'documented (docs/method.md 2.5)')
