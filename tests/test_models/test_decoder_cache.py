"""Tests for pcm_plugin.models.decoder_cache: cached steps equal the full
forward, reordered rows equal a permuted batch, and dropping masked memory
positions changes no attention output."""
import torch

from pcm_plugin.models.decoder_cache import (
    drop_masked_positions,
    reorder_cache,
)
from tests.test_models.decoder_checks import make_decoder, make_memory


class TestIncrementalDecoding:

    def test_cached_steps_match_full_forward(self):
        decoder = make_decoder(seed=1, vocab_size=9)
        memory, mask = make_memory(seed=2, batch=3)
        ids = torch.randint(0, 9, (3, 6), generator=torch.Generator().
                            manual_seed(3))  # (B, T)
        ids[:, 0] = decoder.bos_id
        with torch.no_grad():
            full = decoder(ids, memory, mask)  # (B, T, V)
            # Preallocated for 2 steps: the cache grows past them.
            cache = decoder.init_cache(memory, mask, max_len=2)
            for t in range(ids.size(1)):
                assert cache.length == t
                logits = decoder.step(ids[:, t], cache)  # in place
                torch.testing.assert_close(
                    logits, full[:, t], atol=1e-5, rtol=0)
        assert cache.length == 6 and cache.self_kv[0][0].size(0) >= 6

    def test_reorder_cache_matches_permuted_batch(self):
        """Rows repeated and moved, each to its own query slot of a
        width-2 grid (two hypotheses of sample 0), then samples dropped."""
        decoder = make_decoder(seed=4, vocab_size=9)
        memory, mask = make_memory(seed=5, batch=3)
        ids = torch.randint(0, 9, (3, 6), generator=torch.Generator().
                            manual_seed(6))  # (B, T)
        order = torch.tensor([2, 0, 0, 1])
        slots = torch.tensor([4, 0, 1, 2])  # sample = slot // 2
        with torch.no_grad():
            full = decoder(ids[order], memory[order], mask[order])
            cache = decoder.init_cache(memory, mask, width=2)
            for t in range(2):
                decoder.step(ids[:, t], cache)
            reorder_cache(cache, order, slots=slots)
            for t in range(2, 4):
                logits = decoder.step(ids[order, t], cache)
                torch.testing.assert_close(
                    logits, full[:, t], atol=1e-5, rtol=0)
            # Sample 1 leaves: keep memories 0 and 2, renumbered 0 and 1.
            keep = torch.tensor([0, 1, 2])  # rows of samples 2, 0, 0
            reorder_cache(cache, keep, slots=torch.tensor([2, 0, 1]),
                                  memories=torch.tensor([0, 2]))
            for t in range(4, 6):
                logits = decoder.step(ids[order[keep], t], cache)
                torch.testing.assert_close(
                    logits, full[keep, t], atol=1e-5, rtol=0)


class TestDropMaskedPositions:

    def test_layout_and_exact_attention(self):
        decoder = make_decoder(seed=8, vocab_size=9)
        memory, mask = make_memory(seed=9, batch=4, length=6)
        mask[2, 3] = False  # a hole inside a row
        kept, kept_mask = drop_masked_positions(memory, mask)
        assert kept.shape == (4, int(mask.sum(1).max()), 16)
        for row in range(4):  # visible positions first, in order
            count = int(mask[row].sum())
            assert torch.equal(kept[row, :count], memory[row][mask[row]])
            assert kept_mask[row].tolist() == [True] * count + [False] * (
                kept_mask.size(1) - count)
        ids = torch.randint(0, 9, (4, 5))  # (B, T)
        with torch.no_grad():
            torch.testing.assert_close(decoder(ids, kept, kept_mask),
                                       decoder(ids, memory, mask),
                                       atol=1e-6, rtol=0)

    def test_nothing_to_drop_or_not_equivalent(self):
        memory, mask = make_memory(seed=1, batch=3, length=5)
        full = torch.ones_like(mask)
        assert drop_masked_positions(memory, full)[0] is memory
        # Row 0 is whole: no shorter layout exists.
        assert drop_masked_positions(memory, mask)[0] is memory
        # A row with no visible key averages *all* keys: kept as is.
        mask[0, 1:] = False
        mask[1] = False
        assert drop_masked_positions(memory, mask)[1] is mask
