"""``attn_impl='sdpa'`` computes what the reference ``'eager'`` attention
computes: outputs and gradients within float32 round-off, fully masked
rows included, and the same decoded ids; both decode under bfloat16
autocast nearly as in float32."""
import pytest
import torch

from pcm_plugin.models.layers import MultiHeadAttention

TOL = dict(atol=1e-5, rtol=1e-5)


def twins(cls, **kwargs):
    """An eager and an SDPA module with the same weights, eval mode."""
    torch.manual_seed(0)
    eager = cls(**kwargs, attn_impl='eager').eval()
    sdpa = cls(**kwargs, attn_impl='sdpa').eval()
    sdpa.load_state_dict(eager.state_dict())
    return eager, sdpa


def run_with_grads(attn, query, key, mask):
    """Output of ``attn`` and the gradients of a fixed function of it with
    respect to the inputs and every parameter."""
    query = query.clone().requires_grad_()
    key = key.clone().requires_grad_()
    attn.zero_grad()
    out = attn(query, key, key, mask)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * weights).sum().backward()
    grads = [query.grad, key.grad] + [p.grad for p in attn.parameters()]
    return out.detach(), grads


def self_attention_mask(batch: int, length: int) -> torch.Tensor:
    """Causal & padding mask (B, 1, T, T) as the decoder builds it; sample
    b has ``b`` padded positions."""
    causal = torch.ones(length, length, dtype=torch.bool).tril()[None]
    real = torch.ones(batch, length, dtype=torch.bool)
    for b in range(batch):
        real[b, length - b:] = False
    return (causal & real[:, None, :])[:, None]  # (B, 1, T, T)


def key_mask(batch: int, length: int) -> torch.Tensor:
    """(B, S) key mask, sample b has ``b`` masked keys."""
    mask = torch.ones(batch, length, dtype=torch.bool)
    for b in range(batch):
        mask[b, length - b:] = False
    return mask


def fully_masked_rows(batch: int, queries: int,
                      length: int) -> torch.Tensor:
    """(B, 1, T, S) mask with query row 1 of sample 0 and every row of
    sample 1 seeing no key."""
    mask = torch.rand(batch, 1, queries, length,
                      generator=torch.Generator().manual_seed(1)) > 0.4
    mask[..., 0] = True
    mask[0, :, 1] = False
    mask[1] = False
    return mask


@pytest.mark.parametrize('case', ['self_causal_padding', 'cross_key_mask',
                                  'fully_masked_rows', 'no_mask'])
def test_sdpa_equals_eager_outputs_and_gradients(case):
    eager, sdpa = twins(MultiHeadAttention, embed_dim=32, num_heads=4)
    gen = torch.Generator().manual_seed(0)
    batch, queries, keys = 3, 6, 6 if case == 'self_causal_padding' else 9
    query = torch.randn(batch, queries, 32, generator=gen)
    key = query if case == 'self_causal_padding' else torch.randn(
        batch, keys, 32, generator=gen)
    mask = dict(self_causal_padding=self_attention_mask(batch, queries),
                cross_key_mask=key_mask(batch, keys),
                fully_masked_rows=fully_masked_rows(batch, queries, keys),
                no_mask=None)[case]
    out_e, grads_e = run_with_grads(eager, query, key, mask)
    out_s, grads_s = run_with_grads(sdpa, query, key, mask)
    torch.testing.assert_close(out_s, out_e, **TOL)
    assert len(grads_e) == len(grads_s) == 10
    for grad_s, grad_e in zip(grads_s, grads_e):
        torch.testing.assert_close(grad_s, grad_e, **TOL)


def test_a_fully_masked_row_is_the_uniform_average_in_both():
    """-10000 replaces the masked scores (not -inf, not an added bias): a
    row seeing no key averages every value, in both implementations."""
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0] = True  # sample 0 sees all keys, sample 1 none
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(2, 3, 16, generator=gen)
    key = torch.randn(2, 5, 16, generator=gen)
    for attn in twins(MultiHeadAttention, embed_dim=16, num_heads=2):
        with torch.no_grad():
            out = attn(query, key, key, mask)
            mean_value = attn.v_proj(key[1]).mean(0)  # (d,)
            expected = attn.out_proj(mean_value)
        assert torch.isfinite(out).all()
        for row in out[1]:
            torch.testing.assert_close(row, expected, **TOL)


def test_attention_dropout_applies_in_training_only():
    """p = 1 drops every attention weight: the output is the output
    projection's bias, in both implementations; eval mode ignores p."""
    eager, sdpa = twins(MultiHeadAttention, embed_dim=16, num_heads=2,
                        attn_drop=1.0)
    x = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    for attn in (eager, sdpa):
        with torch.no_grad():
            attn.train()
            dropped = attn(x, x, x)
            attn.eval()
            kept = attn(x, x, x)
        torch.testing.assert_close(
            dropped, attn.out_proj.bias.expand_as(dropped))
        assert not torch.allclose(kept, dropped)


def test_unknown_attn_impl_is_a_clear_error():
    with pytest.raises(ValueError, match=r"attn_impl must be one of .*'fa'"):
        MultiHeadAttention(embed_dim=8, num_heads=2, attn_impl='fa')


DECODER = dict(vocab_size=11, embed_dim=32, num_layers=2, num_heads=4,
               ffn_dim=64, max_len=8)


def decoder_inputs(batch: int = 4, length: int = 7, steps: int = 6):
    """Memory with per-sample masks, and padded teacher-forcing ids."""
    gen = torch.Generator().manual_seed(3)
    memory = torch.randn(batch, length, 32, generator=gen)
    mask = key_mask(batch, length)
    ids = torch.randint(1, 11, (batch, steps), generator=gen)
    ids[:, 0] = 0  # BOS
    real = key_mask(batch, steps)
    return memory, mask, ids, real


def test_decoder_teacher_forcing_and_gradients_agree():
    from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
    memory, mask, ids, real = decoder_inputs()
    results = []
    for decoder in twins(CaptionTransformerDecoder, **DECODER):
        memory_in = memory.clone().requires_grad_()
        logits = decoder(ids, memory_in, mask, real)
        logits.log_softmax(-1)[..., 3].sum().backward()
        grads = [memory_in.grad] + [p.grad for p in decoder.parameters()]
        results.append((logits.detach(), grads))
    (logits_e, grads_e), (logits_s, grads_s) = results
    torch.testing.assert_close(logits_s, logits_e, **TOL)
    for grad_s, grad_e in zip(grads_s, grads_e):
        torch.testing.assert_close(grad_s, grad_e, **TOL)


def spread_decoders():
    """Eager and SDPA decoders with the same weights, every matrix drawn
    from N(0, 0.3^2): default-initialised, the random decoder repeats one
    word; with these its next word depends on the context."""
    from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
    eager, sdpa = twins(CaptionTransformerDecoder, **DECODER)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in eager.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    sdpa.load_state_dict(eager.state_dict())
    return eager, sdpa


@pytest.mark.parametrize('beam_size', [1, 3])
def test_cached_decoding_gives_the_same_ids(beam_size):
    """Greedy and beam search through the key/value cache (the step path:
    no self-attention mask, a cross-attention key mask)."""
    memory, mask, _, _ = decoder_inputs(batch=5)
    eager, sdpa = spread_decoders()
    ids_e, scores_e = eager.generate(memory, mask, beam_size=beam_size)
    ids_s, scores_s = sdpa.generate(memory, mask, beam_size=beam_size)
    assert torch.equal(ids_s, ids_e)
    assert len(ids_e.unique()) >= 4
    torch.testing.assert_close(scores_s, scores_e, rtol=1e-5, atol=1e-4)


def test_encoder_agrees_with_a_token_mask():
    from pcm_plugin.models.vs_encoder import VisualSemanticEncoder
    eager, sdpa = twins(VisualSemanticEncoder, embed_dim=32, num_layers=2,
                        num_heads=4, ffn_dim=64)
    tokens = torch.randn(3, 8, 32, generator=torch.Generator().manual_seed(2))
    mask = key_mask(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(tokens, mask), eager(tokens, mask),
                                   **TOL)


@pytest.mark.parametrize('beam_size', [1, 3])
@pytest.mark.parametrize('impl', ['eager', 'sdpa'])
def test_bf16_autocast_decodes_nearly_the_fp32_captions(impl, beam_size):
    """Under bfloat16 autocast (``--amp`` on CPU) the search runs to the
    end, returns valid EOS-terminated ids and (measured) 15 or 16 of 16
    fp32 captions; where the ids agree, so do the scores, to bfloat16
    round-off accumulated over the steps (measured: 3 % at most).
    """
    decoder = dict(zip(('eager', 'sdpa'), spread_decoders()))[impl]
    memory, mask, _, _ = decoder_inputs(batch=16)
    ids32, scores32 = decoder.generate(memory, mask, beam_size=beam_size)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ids16, scores16 = decoder.generate(memory, mask, beam_size=beam_size)
    assert ids16.shape == ids32.shape == (16, DECODER['max_len'])
    assert ((ids16 >= 0) & (ids16 < DECODER['vocab_size'])).all()
    ended = (ids16 == 0).cumsum(1) > 0  # from the first EOS on
    assert (ids16[ended] == 0).all()
    assert scores16.dtype == torch.float32 and torch.isfinite(scores16).all()
    same = (ids16 == ids32).all(1)
    assert same.sum() >= 15, (ids16, ids32)
    torch.testing.assert_close(scores16[same], scores32[same], rtol=0.05,
                               atol=0.05)
