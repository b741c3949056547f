# Copyright (c) pcm_plugin authors. MIT licence.
"""The official PCM-Net annotation pickles, read without running code.

The "META ANNO DATA" files (``mscoco_caption_anno_{train,val,test}.pkl``,
``flickr30k_caption_anno_*.pkl``; docs/method.md §2.3) are pickled lists of
dicts, one per image: ``image_id`` (str), ``split_id`` (the synthetic
feature folder ``<FEATS_FOLDER>_sp<split_id>``), ``tokens_ids`` and
``target_ids`` (one row per caption over the official ``vocabulary.txt``:
input ``0 w1 .. wn 0 ..``, target ``w1 .. wn 0 -1 ..``; id 0 is '.', the
BOS/EOS) and ``clipscore`` = 2.5 x the CLIP image-caption cosine. SynC's
refined training set is the same list with a re-assigned ``image_id`` and
``clipscore`` = 5 x the SigLIP2 cosine.

:func:`read_official_records` admits only the numpy globals an array pickle
names (:data:`ADMITTED`), so a crafted file is refused before anything is
called; :func:`caption_word_ids` checks every row the way the official
loader and loss read it.
"""
import _codecs
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from .safe_pickle import AdmittedGlobalsUnpickler, UnsafePickleError

try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray, numeric

# PCM-Net's clipscore is 2.5 x the CLIP cosine (the loss divides it out).
CLIP_SCORE_SCALE = 2.5
# SynC's clipscore is 5 x the SigLIP2 cosine; as this plugin's ``clip_cos``
# it becomes the SigLIP2 cosine itself (/ 5), or what the official loss
# makes of the file (/ 2.5, twice the cosine), so a run weights pairs as
# the official code did.
SYNC_SCORES = {'siglip2-cosine': 5.0, 'as-official': 2.5}
# Captions tokenized at once when checking (bounds the memory of a
# 542,401-record import).
CHECK_CHUNK = 8192


def _numpy_globals() -> Dict:
    """``(module, name) -> object`` for what numpy 1.x and 2.x write when
    pickling arrays and scalars (protocols 2 to 5), and ``_codecs.encode``
    that protocol 2 uses for bytes."""
    admitted = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
                ('_codecs', 'encode'): _codecs.encode}
    for core in ('numpy.core', 'numpy._core'):
        admitted.update({
            (f'{core}.multiarray', '_reconstruct'): multiarray._reconstruct,
            (f'{core}.multiarray', 'scalar'): multiarray.scalar,
            (f'{core}.numeric', '_frombuffer'): numeric._frombuffer})
    return admitted


def read_official_vocabulary(path: str) -> List[str]:
    """The words of an official ``vocabulary.txt``, id 1 first."""
    with open(path, encoding='utf-8') as f:
        words = [line.strip() for line in f if line.strip()]
    if not words:
        raise ValueError(f'{path}: no words (expected one word per line)')
    return words


def read_official_records(path: str) -> List[Dict]:
    """The records of an official (or SynC) annotation pickle.

    Args:
        path (str): e.g. ``mscoco_caption_anno_train.pkl``.

    Returns:
        list[dict]: The records as the file holds them (numpy arrays for
        the token rows), each with at least ``image_id``.

    Raises:
        UnsafePickleError: The file names a callable outside numpy's array
            reconstruction (nothing was called), or is no pickle.
        ValueError: Not a list of records with an ``image_id``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'official annotation pickle {path} not '
                                'found')
    with open(path, 'rb') as f:
        try:
            # encoding='bytes' as the official loader opens them.
            records = AdmittedGlobalsUnpickler(
                f, admitted=_numpy_globals(), source=path,
                what='an annotation pickle (a list of dicts of numpy arrays)',
                encoding='bytes').load()
        except UnsafePickleError:
            raise
        except Exception as exc:  # any damage: truncated, not a pickle
            raise UnsafePickleError(
                f'{path}: not a readable annotation pickle '
                f'({type(exc).__name__}: {exc})') from None
    if not isinstance(records, list):
        raise ValueError(f'{path}: expected a list of records, got '
                         f'{type(records).__name__}')
    for k, record in enumerate(records):
        if not isinstance(record, dict) or 'image_id' not in record:
            raise ValueError(f'{path}: record {k} is not a dict with an '
                             '`image_id`')
    return records


def _where(path: str, k: int, record: Dict) -> str:
    return f'{path}: record {k} (image_id {record.get("image_id")!r})'


def _rows(record: Dict, key: str, where: str) -> np.ndarray:
    rows = np.asarray(record[key])
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.dtype.kind not in 'iu':
        raise ValueError(f'{where}: `{key}` must be integer rows (captions '
                         f'x positions), got {rows.dtype} {rows.shape}')
    return rows


def caption_word_ids(record: Dict, where: str, vocab_size: int
                     ) -> List[List[int]]:
    """The official word ids of each caption of a record.

    The words are the target row up to its first 0 (EOS) or -1; the input
    row must be ``0`` followed by the same words, as the official decoder
    is fed.

    Args:
        record (dict): An official record with ``tokens_ids`` and
            ``target_ids``.
        where (str): Names the record in errors.
        vocab_size (int): Number of words of ``vocabulary.txt``.

    Returns:
        list[list[int]]: One list of ids (1 .. vocab_size) per caption.
    """
    for key in ('tokens_ids', 'target_ids'):
        if key not in record:
            raise ValueError(f'{where}: no `{key}`; a training record needs '
                             'tokens_ids and target_ids')
    tokens = _rows(record, 'tokens_ids', where)
    targets = _rows(record, 'target_ids', where)
    if tokens.shape != targets.shape:
        raise ValueError(f'{where}: tokens_ids {tokens.shape} and '
                         f'target_ids {targets.shape} differ in shape')
    captions = []
    for row, (token_row, target_row) in enumerate(zip(tokens, targets)):
        stop = np.flatnonzero(target_row <= 0)
        n = int(stop[0]) if stop.size else len(target_row)
        words = target_row[:n]
        fed = token_row[1:n + 1]
        if token_row[0] != 0 or not np.array_equal(fed, words):
            raise ValueError(f'{where}: caption {row}: tokens_ids '
                             f'{token_row.tolist()} is not 0 followed by '
                             f'the words of target_ids {words.tolist()}')
        if n == 0 or words.max() > vocab_size:
            raise ValueError(f'{where}: caption {row}: word ids '
                             f'{words.tolist()} are empty or beyond the '
                             f'{vocab_size} words of the vocabulary: not '
                             'the vocabulary.txt of this pickle')
        captions.append([int(i) for i in words])
    return captions


def score_to_cosine(record: Dict, where: str, scale: float) -> float:
    """``clipscore / scale``, computed in the score's own precision (a
    float32 score gives the float32 quotient the official loss computes).
    """
    if 'clipscore' not in record:
        raise ValueError(f'{where}: no `clipscore`; the weighted loss needs '
                         'one per training record')
    score = record['clipscore']
    score = score.reshape(()) if isinstance(score, np.ndarray) else score
    if isinstance(score, np.floating):
        return float(score / score.dtype.type(scale))
    return float(score) / scale


def official_entries(path: str, records: Sequence[Dict], words: Sequence[str],
                     *, scale: Optional[float]) -> List[Dict]:
    """This plugin's annotation entries of official records.

    Args:
        path (str): The pickle, named in errors.
        records (Sequence[dict]): From :func:`read_official_records`.
        words (Sequence[str]): The official vocabulary, id 1 first.
        scale (float, optional): ``clipscore = scale x cosine``; None for
            an evaluation split (no captions needed, no weights).

    Returns:
        list[dict]: Training (``scale`` given): one entry per caption with
        ``image_id``, ``caption`` (the words joined by spaces), ``clip_cos``,
        ``split_id`` (when the record has one) and ``official_index``.
        Evaluation: one entry per image, ``image_id`` (and ``captions``
        when the record has token rows).
    """
    entries = []
    for k, record in enumerate(records):
        where = _where(path, k, record)
        entry = dict(image_id=str(record['image_id']))
        if scale is None:
            if 'target_ids' in record:
                entry['captions'] = [
                    ' '.join(words[i - 1] for i in ids) for ids in
                    caption_word_ids(record, where, len(words))]
            entries.append(entry)
            continue
        entry['clip_cos'] = score_to_cosine(record, where, scale)
        if 'split_id' in record:
            entry['split_id'] = int(record['split_id'])
        entry['official_index'] = k
        for ids in caption_word_ids(record, where, len(words)):
            entries.append(dict(entry, caption=' '.join(
                words[i - 1] for i in ids)))
    return entries


def check_tokenizer_agrees(tokenizer, entries: Sequence[Dict],
                           records: Sequence[Dict], words: Sequence[str],
                           path: str) -> None:
    """Raise unless ``tokenizer`` (of the official vocabulary) turns every
    recovered caption back into its official ids shifted by 2.

    Args:
        tokenizer (tokenizers.Tokenizer): From
            ``tokenizer_from_official_words(words)``.
        entries (Sequence[dict]): Training entries from
            :func:`official_entries`, in order.
        records (Sequence[dict]): The records they came from.
        words (Sequence[str]): The official vocabulary.
        path (str): The pickle, named in errors.
    """
    expected = (ids for k, record in enumerate(records)
                for ids in caption_word_ids(record, _where(path, k, record),
                                            len(words)))
    for start in range(0, len(entries), CHECK_CHUNK):
        chunk = entries[start:start + CHECK_CHUNK]
        encoded = tokenizer.encode_batch([e['caption'] for e in chunk],
                                         add_special_tokens=False)
        for entry, enc in zip(chunk, encoded):
            if enc.ids != [i + 2 for i in next(expected)]:
                raise ValueError(
                    f'{path}: record {entry["official_index"]}: the caption '
                    f'{entry["caption"]!r} tokenizes to other ids than the '
                    'record\'s; a vocabulary word is changed by the '
                    'tokenizer\'s normaliser (lower case, letters and '
                    'digits only)')
