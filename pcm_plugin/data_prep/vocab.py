# Copyright (c) pcm_plugin authors. MIT licence.
"""Word vocabulary from training captions, and its token coverage.

The tokenizer itself (normalisation, special ids, file format) is
:mod:`pcm_plugin.models.tokenizer`; this module feeds it the captions of an
annotation file and measures how much of a corpus it covers.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from pcm_plugin.models.tokenizer import (
    SPECIAL_TOKENS,
    UNK_ID,
    basic_words,
    build_word_tokenizer,
    count_words,
    load_caption_tokenizer,
    save_tokenizer,
)
from pcm_plugin.utils.progress import progress_bar

from .caption_readers import read_annotation_captions


@dataclass
class Coverage:
    """Token coverage of a vocabulary on a corpus.

    Attributes:
        num_tokens (int): Words in the corpus (after normalisation).
        num_unk (int): Of those, words mapped to ``[UNK]``.
        num_types (int): Distinct words in the corpus.
        num_unk_types (int): Distinct words missing from the vocabulary.
    """
    num_tokens: int
    num_unk: int
    num_types: int
    num_unk_types: int

    @property
    def token_coverage(self) -> float:
        """Fraction of tokens that are not ``[UNK]`` (1.0 if empty)."""
        return 1 - self.num_unk / self.num_tokens if self.num_tokens else 1.0

    @property
    def type_coverage(self) -> float:
        """Fraction of distinct words in the vocabulary (1.0 if empty)."""
        return 1 - self.num_unk_types / self.num_types \
            if self.num_types else 1.0


def token_coverage(tokenizer, captions: Iterable[str]) -> Coverage:
    """Encode ``captions`` with the tokenizer and count ``[UNK]`` ids.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (from
            :func:`build_word_tokenizer`) or a transformers tokenizer
            loaded with ``load_caption_tokenizer``.
        captions (Iterable[str]): The corpus.

    Returns:
        Coverage: counts of tokens and unknown tokens.
    """
    backend = getattr(tokenizer, 'backend_tokenizer', tokenizer)
    captions = list(captions)
    num_tokens = num_unk = 0
    types, unk_types = set(), set()
    encodings = backend.encode_batch(captions, add_special_tokens=False)
    for caption, encoding in zip(captions, encodings):
        # The word-level model maps each normalised word to one id; the
        # words themselves are needed to count distinct unknown words.
        words = backend.normalizer.normalize_str(caption).split()
        if len(words) != len(encoding.ids):
            raise ValueError(f'tokenizer is not word-level: {caption!r} -> '
                             f'{encoding.tokens}')
        for word, idx in zip(words, encoding.ids):
            num_tokens += 1
            types.add(word)
            if idx == UNK_ID:
                num_unk += 1
                unk_types.add(word)
    return Coverage(num_tokens, num_unk, len(types), len(unk_types))


def build_vocab(captions: Sequence[str], out_path: str, *,
                min_count: int = 5, max_words: int = 0,
                progress: bool = False):
    """Count words, build the word-level tokenizer and save it.

    Args:
        captions (Sequence[str]): Training captions.
        out_path (str): Where ``tokenizer.json`` goes.
        min_count (int): Keep words seen at least this many times.
            Defaults to 5.
        max_words (int): Cap on the number of words (0 = none).
        progress (bool): Show a progress bar while counting.

    Returns:
        tuple: the ``tokenizers.Tokenizer`` and the word ``Counter``.

    Raises:
        ValueError: ``min_count`` below 1, ``max_words`` below 0, or no
            word to keep (nothing is written then).
    """
    if min_count < 1:
        raise ValueError(f'min_count must be >= 1, got {min_count}')
    if max_words < 0:
        raise ValueError(f'max_words must be >= 0 (0: no cap), got '
                         f'{max_words}')
    if not any(basic_words(c) for c in captions):
        raise ValueError('no words in the training captions: the '
                         'vocabulary would be empty; check the annotation '
                         'file')
    counts = count_words(progress_bar(captions, desc='counting words',
                                      disable=not progress))
    check_words_kept(counts, min_count)
    tokenizer = build_word_tokenizer(counts, min_count=min_count,
                                     max_words=max_words)
    save_tokenizer(tokenizer, out_path)
    return tokenizer, counts


def check_words_kept(counts: Counter, min_count: int) -> None:
    """Refuse a ``min_count`` that no word reaches: the tokenizer would hold
    the special tokens only and every caption would train as ``[UNK]``.

    Args:
        counts (Counter): Word frequencies of the training captions (not
            empty).
        min_count (int): The threshold asked for.

    Raises:
        ValueError: naming the threshold, what the captions hold and the
            highest ``min_count`` that keeps a word.
    """
    top_word, top = counts.most_common(1)[0]
    if top >= min_count:
        return
    raise ValueError(
        f'min_count {min_count} keeps no word: the training captions hold '
        f'{len(counts)} distinct words, the most frequent ({top_word!r}) '
        f'seen {top} times, so the vocabulary would hold the special tokens '
        f'only; pass --min-count {top} or lower')


def build_tokenizer_file(ann_file: str, out: str, *, min_count: int = 5,
                         max_words: int = 0,
                         coverage_anns: Sequence[str] = (),
                         progress: bool = True) -> dict:
    """Tokenizer of an annotation file's captions, written and reloaded.

    What ``tools/build_vocab.py`` runs: count the training captions' words,
    save ``tokenizer.json``, load it back through the loader training uses
    (validates the ids) and measure token coverage.

    Args:
        ann_file (str): Training annotation JSON.
        out (str): ``tokenizer.json`` path.
        min_count (int): Keep words seen at least this often.
        max_words (int): Cap on the number of words (0 = none).
        coverage_anns (list[str]): Held-out annotation files to report
            coverage on.
        progress (bool): Progress bar while counting.

    Returns:
        dict: The statistics (also what ``--stats-out`` writes).
    """
    captions = read_annotation_captions(ann_file)
    _, counts = build_vocab(captions, out, min_count=min_count,
                            max_words=max_words, progress=progress)
    tokenizer = load_caption_tokenizer(out)
    held_out = {f: token_coverage(tokenizer, read_annotation_captions(f))
                for f in coverage_anns}
    train = token_coverage(tokenizer, captions)
    return dict(ann_file=ann_file, tokenizer=out, min_count=min_count,
                max_words=max_words, num_captions=len(captions),
                distinct_words=len(counts),
                vocab_words=len(tokenizer) - len(SPECIAL_TOKENS),
                vocab_size=len(tokenizer),
                train_token_coverage=train.token_coverage,
                held_out={f: dict(num_tokens=c.num_tokens,
                                  num_unk=c.num_unk,
                                  num_unk_types=c.num_unk_types,
                                  num_types=c.num_types,
                                  token_coverage=c.token_coverage,
                                  type_coverage=c.type_coverage)
                          for f, c in held_out.items()})
