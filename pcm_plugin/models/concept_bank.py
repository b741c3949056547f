"""Concept banks: concept words and their unit CLIP text embeddings.

Stored as ``.npz`` (``words``, ``embeddings``, ``meta``) and always read with
``allow_pickle=False``; the official banks are pickles, which
``tools/build_concepts.py import-official`` converts without executing them.
"""
import json
import os.path as osp
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pcm_plugin.utils.fileio import atomic_path

# A row norm outside this range is not a unit embedding (fp16 rounding of
# the official banks stays within 0.9988-1.0107).
NORM_RANGE = (0.98, 1.02)


def default_concept_words() -> List[str]:
    """The 446 concept words of the official COCO bank, in file order."""
    text = resources.files('pcm_plugin').joinpath(
        'resources/coco_concepts_446.txt').read_text(encoding='utf-8')
    return [w for w in text.split('\n') if w]


def validate_concept_bank(words: Sequence[str], embeddings: np.ndarray,
                          source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the culprit if malformed."""
    if embeddings.ndim != 2 or embeddings.shape[0] != len(words):
        raise ValueError(f'{source}: {len(words)} words but embeddings of '
                         f'shape {tuple(embeddings.shape)}')
    seen = set()
    for word in words:
        if word in seen:
            raise ValueError(f'{source}: duplicate concept word {word!r}; '
                             'each word must appear once')
        seen.add(word)
    values = embeddings.astype(np.float32)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f'{source}: embedding of word {words[i]!r} (row {i})'
                         ' has NaN/inf values')
    norms = np.linalg.norm(values, axis=1)
    off = (norms < NORM_RANGE[0]) | (norms > NORM_RANGE[1])
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(
            f'{source}: embedding of word {words[i]!r} (row {i}) has norm '
            f'{norms[i]:.4f}; concept embeddings must be unit vectors '
            '(build the bank with tools/build_concepts.py)')


def save_concept_bank(path: str, words: Sequence[str], embeddings: np.ndarray,
                      meta: Optional[Dict] = None) -> None:
    """Validate and write a concept bank ``.npz`` atomically."""
    embeddings = np.asarray(embeddings)
    validate_concept_bank(words, embeddings, path)
    with atomic_path(path, suffix='.npz') as tmp:
        np.savez(tmp, words=np.asarray(list(words), dtype=str),
                 embeddings=embeddings,
                 meta=np.asarray(json.dumps(meta or {})))


def load_concept_bank(path: str) -> Tuple[List[str], np.ndarray, Dict]:
    """Read and validate a concept bank.

    Args:
        path (str): A ``.npz`` written by :func:`save_concept_bank`.

    Returns:
        tuple: ``words`` (list of C str), ``embeddings`` (C, Dg) float32,
        ``meta`` (dict).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'concept bank {path} not found. Build one with `python '
            'tools/build_concepts.py encode --clip-model ... --out '
            f'{path}`, import the official one with `python '
            'tools/build_concepts.py import-official PICKLE --out ...`, '
            'or fix `concept_bank` in the config')
    try:
        with np.load(path, allow_pickle=False) as data:
            words = [str(w) for w in data['words']]
            embeddings = np.asarray(data['embeddings'], dtype=np.float32)
            meta = json.loads(str(data['meta'])) if 'meta' in data else {}
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f'{path}: not a concept bank .npz with `words` and '
                         f'`embeddings` ({exc})') from exc
    validate_concept_bank(words, embeddings, path)
    return words, embeddings, meta
