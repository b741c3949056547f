"""Tests for pcm_plugin.models.caption_decoder: teacher-forced forward,
masks, registry, errors and training (docs/method.md §3.7-3.8). The search
is in test_beam_search.py, the cache in test_decoder_cache.py, one layer in
test_decoder_layer.py."""
import pytest
import torch

from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
from pcm_plugin.registry import MODELS
from tests.test_models.decoder_checks import TINY, make_decoder, make_memory


class TestMasking:

    def test_masked_memory_is_ignored(self):
        decoder = make_decoder(seed=5)
        memory, mask = make_memory(seed=6, batch=3, length=6)
        mask[0, 2] = False
        ids = torch.randint(0, 7, (3, 4))  # (B, T)
        changed = memory.clone()
        changed[~mask] = torch.randn(int((~mask).sum()), 16) * 10
        with torch.no_grad():
            before = decoder(ids, memory, mask)
            after = decoder(ids, changed, mask)
            visible_change = memory.clone()
            visible_change[0, 0] += 1.0
            moved = decoder(ids, visible_change, mask)
        torch.testing.assert_close(before, after, atol=1e-5, rtol=0)
        assert not torch.allclose(before[0], moved[0], atol=1e-3)
        gen_before = decoder.generate(memory, mask, beam_size=3, max_len=5)
        gen_after = decoder.generate(changed, mask, beam_size=3, max_len=5)
        assert torch.equal(gen_before[0], gen_after[0])

    def test_causal_and_input_mask(self):
        decoder = make_decoder(seed=6)
        memory, mask = make_memory(seed=7, batch=2)
        ids = torch.randint(1, 7, (2, 6))  # (B, T)
        future = ids.clone()
        future[:, 3] = (ids[:, 3] % 6) + 1  # a different word
        with torch.no_grad():
            base = decoder(ids, memory, mask)
            moved = decoder(future, memory, mask)
        torch.testing.assert_close(base[:, :3], moved[:, :3], atol=1e-6,
                                   rtol=0)
        assert not torch.allclose(base[:, 3], moved[:, 3], atol=1e-3)
        # A padded key (input_mask False) is invisible to the others.
        input_mask = torch.ones(2, 6, dtype=torch.bool)
        input_mask[:, 3] = False
        with torch.no_grad():
            base = decoder(ids, memory, mask, input_mask)
            moved = decoder(future, memory, mask, input_mask)
        keep = [0, 1, 2, 4, 5]
        torch.testing.assert_close(base[:, keep], moved[:, keep], atol=1e-6,
                                   rtol=0)


class TestStructure:

    def test_shapes_registry_and_bad_input(self):
        decoder = MODELS.build(
            dict(type='CaptionTransformerDecoder', vocab_size=11, **TINY))
        assert isinstance(decoder, CaptionTransformerDecoder)
        memory, mask = make_memory(seed=0, batch=2)
        logits = decoder(torch.zeros(2, 5, dtype=torch.long), memory, mask)
        assert logits.shape == (2, 5, 11)
        with pytest.raises(ValueError, match='memory_mask must be a bool'):
            decoder(torch.zeros(2, 5, dtype=torch.long), memory, mask.float())
        with pytest.raises(ValueError, match='divisible by num_heads'):
            CaptionTransformerDecoder(vocab_size=5, embed_dim=10, num_heads=4)
        with pytest.raises(ValueError, match='eos_id=5'):
            CaptionTransformerDecoder(vocab_size=5, eos_id=5, **TINY)

    def test_gradients_flow_in_train_mode(self):
        decoder = make_decoder(seed=2).train()
        memory, mask = make_memory(seed=3, batch=2)
        memory.requires_grad_(True)
        ids = torch.randint(0, 7, (2, 5))  # (B, T)
        torch.manual_seed(0)
        logits = decoder(ids, memory, mask)
        logits.log_softmax(-1)[..., 1].sum().backward()
        for name, param in decoder.named_parameters():
            assert param.grad is not None, name
            assert param.grad.abs().sum() > 0, name
        assert memory.grad[mask].abs().sum() > 0
        assert memory.grad[~mask].abs().sum() == 0
        with torch.no_grad():  # dropout is active in train mode
            assert not torch.equal(logits, decoder(ids, memory, mask))
