"""Word-level caption tokenizer, saved as ``tokenizer.json``.

The official PCM-Net code uses X-modaler's word vocabulary (10,199 COCO words,
7,552 Flickr30k words) with one id, 0, serving as both BOS and EOS. We keep
that convention and build the vocabulary from the training captions with the
Hugging Face ``tokenizers`` library, so the file loads offline through
``transformers.PreTrainedTokenizerFast`` like any other tokenizer.
"""
import json
import os.path as osp
import tempfile
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from pcm_plugin.utils.fileio import atomic_path

EOS_TOKEN, UNK_TOKEN, PAD_TOKEN = '[EOS]', '[UNK]', '[PAD]'
EOS_ID, UNK_ID, PAD_ID = 0, 1, 2
SPECIAL_TOKENS = (EOS_TOKEN, UNK_TOKEN, PAD_TOKEN)
# X-modaler's preprocessing writes every rare caption word as this word, and
# appends it to vocabulary.txt, where it is an ordinary (learned) word.
OFFICIAL_UNKNOWN_WORD = 'UNK'
# The file that marks a folder as a Hugging Face tokenizer (GPT-2's own).
HF_TOKENIZER_CONFIG = 'tokenizer_config.json'


def _normalizer():
    # Fold accents ('café' -> 'cafe'), lower-case, and drop every character
    # that is not a letter, digit or space (PTB-style punctuation removal).
    return normalizers.Sequence([
        normalizers.NFKD(),
        normalizers.StripAccents(),
        normalizers.Lowercase(),
        normalizers.Replace(_regex(r"[^a-z0-9\s]"), ' '),
    ])


def _regex(pattern: str):
    return Regex(pattern)


def basic_words(text: str) -> List[str]:
    """Split a caption into the words the tokenizer sees (for counting)."""
    return _normalizer().normalize_str(text).split()


def count_words(captions: Iterable[str]) -> Counter:
    """Count normalised words over an iterable of captions."""
    normalizer = _normalizer()
    counts: Counter = Counter()
    for caption in captions:
        counts.update(normalizer.normalize_str(caption).split())
    return counts


def build_word_tokenizer(counts: Counter, *, min_count: int = 5,
                         max_words: int = 0):
    """Build a word-level ``tokenizers.Tokenizer`` from word counts.

    Args:
        counts (Counter): Word frequencies, e.g. from :func:`count_words`.
        min_count (int): Keep words seen at least this often. Defaults to 5.
        max_words (int): Keep at most this many words (0 = no limit).

    Returns:
        tokenizers.Tokenizer: Ids 0/1/2 are ``[EOS]``/``[UNK]``/``[PAD]``;
        words follow by decreasing frequency, ties alphabetically.
    """
    words = sorted((w for w, c in counts.items() if c >= min_count),
                   key=lambda w: (-counts[w], w))
    if max_words:
        words = words[:max_words]
    return tokenizer_from_words(words)


def tokenizer_from_words(words: Sequence[str], *,
                         unknown_word: Optional[str] = None):
    """A word-level tokenizer with ``words`` at ids 3, 4, ... in order.

    Args:
        words (Sequence[str]): Distinct words (e.g. an official vocabulary,
            whose order the embedding rows follow).
        unknown_word (str, optional): A word of ``words`` that every word
            outside the vocabulary becomes (the official vocabulary's
            ``'UNK'``). Defaults to None: they become ``[UNK]``.

    Returns:
        tokenizers.Tokenizer: Ids 0/1/2 are ``[EOS]``/``[UNK]``/``[PAD]``.

    Raises:
        ValueError: A repeated or special word, or an ``unknown_word`` that
            is not one of ``words``.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if word in vocab:
            raise ValueError(f'word {word!r} is listed twice (or is a '
                             'special token); a vocabulary needs distinct '
                             'words')
        vocab[word] = len(vocab)
    if unknown_word is not None and unknown_word not in words:
        raise ValueError(f'unknown_word {unknown_word!r} is not a word of '
                         'the vocabulary')
    tokenizer = Tokenizer(WordLevel(
        vocab=vocab, unk_token=unknown_word or UNK_TOKEN))
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix='##', cleanup=False)
    for token in SPECIAL_TOKENS:
        tokenizer.add_special_tokens([token])
    return tokenizer


def tokenizer_from_official_words(words: Sequence[str]):
    """The tokenizer of an official ``vocabulary.txt`` (official id ``j``
    is ``j + 2``).

    The official ``'UNK'`` word, if listed, stays a word (it is upper-case,
    so the lower-casing normaliser alone would send it to ``[UNK]``) and
    takes every word outside the vocabulary, as the official preprocessing
    did; ``[UNK]`` and ``[PAD]`` are then never produced.

    Args:
        words (Sequence[str]): The official words, official id 1 first.

    Returns:
        tokenizers.Tokenizer: See :func:`tokenizer_from_words`.
    """
    unknown = OFFICIAL_UNKNOWN_WORD if OFFICIAL_UNKNOWN_WORD in words \
        else None
    return tokenizer_from_words(words, unknown_word=unknown)


def save_tokenizer(tokenizer, path: str) -> None:
    """Write ``tokenizer.json`` atomically."""
    with atomic_path(path) as tmp:
        tokenizer.save(tmp)


def load_caption_tokenizer(path: str):
    """Load a ``tokenizer.json`` written by ``tools/build_vocab.py``, or a
    language model's own tokenizer.

    Args:
        path (str): The ``tokenizer.json`` file, or a directory holding it.
            A directory with a ``tokenizer_config.json`` is a Hugging Face
            tokenizer folder (e.g. a local GPT-2 download, for a language
            model's pretrained vocabulary): loaded offline as it is, with
            its end-of-text token as BOS and EOS.

    Returns:
        transformers.PreTrainedTokenizerFast: with ``eos``/``bos`` = ``[EOS]``
        (id 0), ``unk`` = ``[UNK]``, ``pad`` = ``[PAD]``; a Hugging Face
        folder's tokenizer otherwise.
    """
    if osp.isfile(osp.join(path, HF_TOKENIZER_CONFIG)):
        return load_hf_tokenizer(path)
    if osp.isdir(path):
        path = osp.join(path, 'tokenizer.json')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'caption tokenizer {path} not found. Build it from the training '
            'captions with `python tools/build_vocab.py ANN_FILE --out '
            f'{path}` (or fix `tokenizer` in the model config; a language '
            "model's own tokenizer is a folder with "
            f'{HF_TOKENIZER_CONFIG}, e.g. a local GPT-2 download).')
    try:
        with open(path, encoding='utf-8') as f:
            json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f'caption tokenizer {path} is not a tokenizer.json ({err}); '
            'rebuild it with `python tools/build_vocab.py ANN_FILE --out '
            f'{path}`') from None
    with open(path, encoding='utf-8') as f:
        return tokenizer_from_json_text(f.read(), source=path)


def load_hf_tokenizer(folder: str):
    """A Hugging Face tokenizer folder, read offline; it must name an
    end-of-text token (it starts and ends every caption).

    Args:
        folder (str): Holds ``tokenizer_config.json`` and the vocabulary.
    """
    # deferred: transformers' auto classes load only for a GPT-2 tokenizer
    from transformers import AutoTokenizer

    # The folder may come inside someone else's release: a tokenizer class
    # of its own (tokenizer_config.json's auto_map) would be code to run.
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                              trust_remote_code=False)
    if tokenizer.eos_token_id is None:
        raise ValueError(f'tokenizer {folder} has no eos_token; set one in '
                         f'its {HF_TOKENIZER_CONFIG} (GPT-2: '
                         '"<|endoftext|>")')
    return tokenizer


def tokenizer_from_json_text(text: str, *, source: str = 'tokenizer'):
    """:func:`load_caption_tokenizer` from the file's text (a released
    model carries it inside its weights).

    Args:
        text (str): The content of a ``tokenizer.json``.
        source (str): Named in errors.
    """
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(text), eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    if ids != [EOS_ID, UNK_ID, PAD_ID]:
        raise ValueError(
            f'{source}: special tokens {SPECIAL_TOKENS} must have ids 0, 1, '
            f'2 but have {ids}; rebuild it with tools/build_vocab.py')
    return tokenizer


def is_word_tokenizer(tokenizer) -> bool:
    """Whether ``tokenizer`` is a word tokenizer of
    :func:`load_caption_tokenizer` (``[EOS]`` its end token), not a
    language model's own (a Hugging Face tokenizer folder's)."""
    return tokenizer.eos_token == EOS_TOKEN


def tokenizer_files(tokenizer) -> Dict[str, bytes]:
    """The files that rebuild ``tokenizer`` (:func:`tokenizer_from_files`),
    file name -> content, to carry in a released model.

    A word tokenizer is its ``tokenizer.json`` (as :func:`save_tokenizer`
    writes it). A language model's tokenizer is what Hugging Face saves of
    it (a fast one: ``tokenizer.json``, ``tokenizer_config.json``,
    ``special_tokens_map.json``): the tokenizer of the folder it came
    from, without that folder's model weights, and with no path of this
    machine.
    """
    if is_word_tokenizer(tokenizer):
        return {'tokenizer.json': tokenizer.backend_tokenizer.to_str(
            pretty=True).encode('utf-8')}
    with tempfile.TemporaryDirectory() as tmp:
        # Fast tokenizers: tokenizer.json alone, not also the slow
        # tokenizer's vocab.json + merges.txt it repeats.
        written = tokenizer.save_pretrained(
            tmp, legacy_format=False if tokenizer.is_fast else None)
        files = {}
        for path in written:
            with open(path, 'rb') as f:
                files[osp.basename(path)] = f.read()
    return files


def tokenizer_from_files(files: Dict[str, bytes], *,
                         source: str = 'tokenizer'):
    """The tokenizer of :func:`tokenizer_files`' files: a Hugging Face
    tokenizer folder (they hold ``tokenizer_config.json``), read offline
    from a temporary folder, or a word tokenizer's ``tokenizer.json``.

    Args:
        files (dict[str, bytes]): File name -> content.
        source (str): Named in errors.

    Raises:
        ValueError: a file name that is not a plain name (it would be
            written outside the temporary folder), or no
            ``tokenizer.json`` for a word tokenizer.
    """
    bad = [name for name in files
           if name in ('', '.', '..') or osp.basename(name) != name]
    if bad:
        raise ValueError(f'{source}: tokenizer file names must be plain '
                         f'file names, got {bad[:3]}')
    if HF_TOKENIZER_CONFIG not in files:
        if 'tokenizer.json' not in files:
            raise ValueError(f'{source}: holds neither a tokenizer.json nor '
                             f'a {HF_TOKENIZER_CONFIG}, but {sorted(files)}')
        return tokenizer_from_json_text(
            files['tokenizer.json'].decode('utf-8'), source=source)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            with open(osp.join(tmp, name), 'wb') as f:
                f.write(data)
        return load_hf_tokenizer(tmp)


def encode_captions(tokenizer, captions: Sequence[str], *, max_len: int = 20,
                    ignore_index: int = -100) -> Tuple:
    """Teacher-forcing inputs and targets, as in the official code.

    A caption ``w1 .. wn`` becomes input ``[EOS] w1 .. wn`` and target
    ``w1 .. wn [EOS]``. Captions are clipped to ``max_len`` words (tokens,
    for a subword tokenizer) and still end with EOS, so the model learns to
    stop. EOS and padding are the tokenizer's own (0 and 2 here; GPT-2's
    end-of-text token for both there). (The official arrays may keep
    a 21st word in place of EOS for clipped captions; that is not
    documented, and stopping cleanly is the safer reading.)

    Args:
        tokenizer: A tokenizer from :func:`load_caption_tokenizer`.
        captions (Sequence[str]): B captions.
        max_len (int): Maximum number of words. Defaults to 20.
        ignore_index (int): Target value of padding. Defaults to -100.

    Returns:
        tuple[LongTensor, LongTensor, BoolTensor]: ``input_ids`` (B, T),
        ``targets`` (B, T) and ``input_mask`` (B, T), T <= max_len + 1.
    """
    ids = tokenizer(list(captions), add_special_tokens=False)['input_ids']
    ids = [seq[:max_len] for seq in ids]
    eos_id = tokenizer.eos_token_id
    pad_id = eos_id if tokenizer.pad_token_id is None else \
        tokenizer.pad_token_id  # masked out: any id would do
    T = max(len(seq) for seq in ids) + 1
    B = len(ids)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), ignore_index, dtype=torch.long)
    input_mask = torch.zeros((B, T), dtype=torch.bool)
    for i, seq in enumerate(ids):
        n = len(seq)
        input_ids[i, 0] = eos_id
        input_ids[i, 1:n + 1] = torch.tensor(seq, dtype=torch.long)
        targets[i, :n] = torch.tensor(seq, dtype=torch.long)
        targets[i, n] = eos_id
        input_mask[i, :n + 1] = True
    return input_ids, targets, input_mask


def decode_ids(tokenizer, ids) -> List[str]:
    """Turn generated id rows into captions, stopping at the first EOS.

    A subword tokenizer (a language model's own, whose EOS is not
    ``[EOS]``) joins its pieces by its own decoder, special tokens left
    out.
    """
    if not is_word_tokenizer(tokenizer):
        eos_id = tokenizer.eos_token_id
        return [tokenizer.decode(
            row[:row.index(eos_id)] if eos_id in row else row,
            skip_special_tokens=True).strip() for row in ids.tolist()]
    captions = []
    for row in ids.tolist():
        words = []
        for idx in row:
            if idx == EOS_ID:
                break
            if idx in (UNK_ID, PAD_ID):
                continue
            words.append(tokenizer.convert_ids_to_tokens(idx))
        captions.append(' '.join(words))
    return captions
