"""A tiny random sentence-transformers folder (BERT + mean pooling).

Same layout as a real one (``config.json``, weights, ``tokenizer.json``,
``1_Pooling/config.json``), so :class:`~pcm_plugin.data_prep.
sentence_encoder.SentenceEncoder` loads it through the same code as
all-MiniLM-L6-v2.
"""
import json
import os
import os.path as osp
from typing import Sequence

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing

SPECIALS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]')


def build_tiny_sentence_model(folder: str, words: Sequence[str], *,
                              width: int = 16, seed: int = 0) -> str:
    """Write a 1-layer BERT of ``width`` over a word-level vocabulary.

    Args:
        folder (str): Output folder (created).
        words (Sequence[str]): Lower-case vocabulary (others -> [UNK]).
        width (int): Hidden size.
        seed (int): Seed of the random weights.

    Returns:
        str: ``folder``.
    """
    # deferred: transformers' BERT loads only where a tiny model is written
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(
        list(SPECIALS) + sorted(set(words) - set(SPECIALS)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single='[CLS] $A [SEP]', special_tokens=[
            ('[CLS]', vocab['[CLS]']), ('[SEP]', vocab['[SEP]'])])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token='[PAD]', unk_token='[UNK]',
        cls_token='[CLS]', sep_token='[SEP]').save_pretrained(folder)
    torch.manual_seed(seed)
    BertModel(BertConfig(
        vocab_size=len(vocab), hidden_size=width, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=2 * width,
        max_position_embeddings=64)).save_pretrained(folder)
    os.makedirs(osp.join(folder, '1_Pooling'), exist_ok=True)
    with open(osp.join(folder, '1_Pooling', 'config.json'), 'w') as f:
        json.dump(dict(word_embedding_dimension=width,
                       pooling_mode_mean_tokens=True), f)
    return folder
