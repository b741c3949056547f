"""VisualSemanticEncoder: the inter-layer global-token aggregation (Eq. 6)."""
import pytest
import torch
from torch.nn import functional as F

from pcm_plugin.registry import MODELS

D = 8


def _encoder(num_layers=2, **kwargs):
    torch.manual_seed(0)
    enc = MODELS.build(dict(type='VisualSemanticEncoder', embed_dim=D,
                            num_layers=num_layers, num_heads=2, ffn_dim=16,
                            attn_drop=0.0, hidden_drop=0.0, ffn_drop=0.0,
                            **kwargs))
    return enc.eval()


def _stage_globals(enc, tokens, mask):
    """Global token after each stage (input, layer 1, layer 2, ...)."""
    h, states = tokens, [tokens[:, 0]]
    for layer in enc.layers:
        h = layer(h, mask)
        states.append(h[:, 0])
    return h, states


@pytest.mark.parametrize('stage', [0, 1, 2])
def test_global_token_selects_the_chosen_stage(stage):
    """global_fuse = [0 .. I .. 0] (block ``stage``), LN identity affine:
    the output global token is LayerNorm of that stage's global token."""
    enc = _encoder()
    with torch.no_grad():
        weight = torch.zeros(D, 3 * D)
        weight[:, stage * D:(stage + 1) * D] = torch.eye(D)
        enc.global_fuse.weight.copy_(weight)
        enc.global_fuse.bias.zero_()
    tokens = torch.randn(2, 5, D)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = enc(tokens, mask)
    h, states = _stage_globals(enc, tokens, mask)
    expected = F.layer_norm(states[stage], (D,), eps=1e-5)
    torch.testing.assert_close(out[:, 0], expected, rtol=0, atol=1e-6)
    # Every other token is the last layer's output, untouched.
    torch.testing.assert_close(out[:, 1:], h[:, 1:], rtol=0, atol=0)


def test_global_token_is_a_linear_mix_of_all_stages():
    enc = _encoder()
    tokens = torch.randn(3, 4, D)
    mask = torch.ones(3, 4, dtype=torch.bool)
    out = enc(tokens, mask)
    _, states = _stage_globals(enc, tokens, mask)
    fused = torch.cat(states, -1) @ enc.global_fuse.weight.t() + \
        enc.global_fuse.bias  # (B, D)
    expected = F.layer_norm(fused, (D,), enc.global_norm.weight,
                            enc.global_norm.bias, eps=1e-5)
    torch.testing.assert_close(out[:, 0], expected, rtol=0, atol=1e-6)


def test_without_aggregation_the_output_is_the_last_layer():
    enc = _encoder(aggregate_global=False)
    assert not hasattr(enc, 'global_fuse')
    tokens = torch.randn(2, 4, D)
    mask = torch.ones(2, 4, dtype=torch.bool)
    h, _ = _stage_globals(enc, tokens, mask)
    torch.testing.assert_close(enc(tokens, mask), h, rtol=0, atol=0)


def test_masked_tokens_do_not_change_visible_outputs():
    """A hidden token's value never reaches the visible ones."""
    enc = _encoder()
    tokens = torch.randn(1, 5, D)
    mask = torch.tensor([[True, True, True, True, False]])
    a = enc(tokens, mask)
    tokens[0, 4] = 100.0
    b = enc(tokens, mask)
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=1e-6)
