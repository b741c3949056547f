"""Tests for pcm_plugin.models.decoder_layer: its size, and the beams of a
sample querying their memory together."""
import torch

from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
from pcm_plugin.models.decoder_layer import DecoderLayer, project_kv


def test_default_layer_parameter_count():
    # docs/method.md §3.7: the 3 decoder layers hold 12.6 M parameters.
    decoder = CaptionTransformerDecoder(vocab_size=3)
    count = sum(p.numel() for p in decoder.layers.parameters())
    per_layer = 2 * 4 * (512 * 512 + 512) + (
        2 * 512 * 2048 + 2048 + 512) + 3 * 2 * 512
    assert count == 3 * per_layer == 12_612_096


def test_grouped_cross_attention_equals_a_memory_row_per_query_row():
    """The queries of a memory row attend as one matrix (slots in a
    ``(S, width)`` grid, empty slots included) and get what each row gets
    from its own copy of the memory row's keys."""
    torch.manual_seed(0)
    layer = DecoderLayer(embed_dim=16, num_heads=2, ffn_dim=32, attn_drop=0.0,
                         hidden_drop=0.0, layer_norm_eps=1e-12,
                         attn_impl='eager').eval()
    memory = torch.randn(3, 5, 16)  # (S, L, d)
    mask = torch.ones(3, 5, dtype=torch.bool)  # (S, L)
    mask[1, 3:] = False
    slots = torch.tensor([0, 1, 3, 4, 5])  # (R,) slot 2 left empty
    rows = slots // 2  # (R,) each query row's memory row, width 2
    x = torch.randn(5, 1, 16)  # (R, T, d)
    with torch.no_grad():
        cross_kv = project_kv(layer.cross_attn, memory)  # (S, H, L, Dh)
        grouped = layer.cross_attend(x, cross_kv, mask, slots, 2)
        copied = tuple(kv[rows] for kv in cross_kv)  # (R, H, L, Dh) each
        one_each = layer.cross_attend(x, copied, mask[rows], None, 1)
    assert grouped.shape == (5, 1, 16)
    torch.testing.assert_close(grouped, one_each, atol=1e-6, rtol=0)
