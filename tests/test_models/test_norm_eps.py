"""Every LayerNorm's epsilon, pinned to the official code's.

The official BERT-style encoder/decoder layers use 1e-12; three norms the
official code leaves at PyTorch's default 1e-5: the mix-up's token norm,
the decoder's word-embedding norm and the encoder's global-aggregation
norm (docs/method.md §9). The gap between 1e-12 and 1e-5 reaches ~1e-2
when the activations entering a norm are small.
"""
from torch import nn

from pcm_plugin.registry import MODELS


def _eps_of(module):
    return {name: m.eps for name, m in module.named_modules()
            if isinstance(m, nn.LayerNorm)}


def test_mixup_token_norm():
    mixup = MODELS.build(dict(type='PCMMixup', patch_dim=8, global_dim=4,
                              num_patches=4, embed_dim=16, mode='none'))
    assert _eps_of(mixup) == {'norm': 1e-5}


def test_encoder_norms():
    enc = MODELS.build(dict(type='VisualSemanticEncoder', embed_dim=16,
                            num_layers=2, num_heads=2, ffn_dim=32))
    expected = {f'layers.{i}.{n}': 1e-12 for i in range(2)
                for n in ('attn_norm', 'ffn_norm')}
    expected['global_norm'] = 1e-5
    assert _eps_of(enc) == expected


def test_decoder_norms():
    dec = MODELS.build(dict(type='CaptionTransformerDecoder', vocab_size=10,
                            embed_dim=16, num_layers=2, num_heads=2,
                            ffn_dim=32))
    expected = {f'layers.{i}.{n}': 1e-12 for i in range(2)
                for n in ('norm_self', 'norm_cross', 'norm_ffn')}
    expected['embed_norm'] = 1e-5
    assert _eps_of(dec) == expected
