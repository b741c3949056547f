"""Tests for pcm_plugin.models.beam_search through the decoder's
``generate``: equal to exhaustive search, to full forwards, to one sample
at a time, and to the search before its speed-up (docs/method.md §3.8)."""
import math

import pytest
import torch

from pcm_plugin.testing.decoding import search_steps
from tests.test_models.decoder_checks import (
    assert_large_beam_is_exhaustive,
    assert_search_matches_recomputation,
    make_decoder,
    make_memory,
)


def previous_search(decoder, memory, memory_mask, beam, steps):
    """The beam search before the speed-up (commit 689dd3c), line for line,
    with each step's logits from a full forward over the prefixes instead
    of its key/value cache: every beam of every sample decoded at every
    step, finished ones frozen at EOS, until all beams have finished.

    Returns:
        tuple: ids (B, T), scores (B,) and the number of steps run.
    """
    batch, vocab, eos = memory.size(0), decoder.vocab_size, decoder.eos_id
    sample = torch.arange(batch)
    memory = memory.repeat_interleave(beam, 0)  # (B * W, L, d)
    memory_mask = memory_mask.repeat_interleave(beam, 0)  # (B * W, L)
    scores = torch.full((batch, beam), -math.inf)  # (B, W)
    scores[:, 0] = 0.0
    finished = torch.zeros(batch, beam, dtype=torch.bool)
    ids = torch.full((batch, beam, steps), eos)  # (B, W, T)
    prefix = torch.full((batch * beam, 1), decoder.bos_id)  # (B * W, 1)
    frozen = torch.full((vocab, ), -math.inf)
    frozen[eos] = 0.0
    for t in range(steps):
        with torch.no_grad():
            logits = decoder(prefix, memory, memory_mask)[:, -1]  # (B*W, V)
        log_probs = logits.float().log_softmax(-1).view(batch, beam, vocab)
        log_probs = torch.where(finished[..., None], frozen, log_probs)
        candidates = scores[..., None] + log_probs  # (B, W, V)
        scores, flat = candidates.view(batch, beam * vocab).topk(beam, -1)
        parent, word = flat // vocab, flat % vocab  # (B, W) each
        ids = ids.gather(1, parent[..., None].expand(-1, -1, steps))
        ids[:, :, t] = word
        finished = finished.gather(1, parent) | (word == eos)
        if bool(finished.all()):
            break
        rows = (parent + sample[:, None] * beam).view(-1)  # (B * W,)
        prefix = torch.cat([prefix[rows], word.view(-1, 1)], 1)
    best = scores.argmax(-1)  # (B,)
    return ids[sample, best], scores[sample, best], t + 1


class TestAgainstThePreviousSearch:
    """Same ids as the search before the speed-up (finished samples and
    beams leaving the batch, the first step on one beam per sample,
    masked memory dropped, queries grouped per sample), whatever ends the
    search: EOS as drawn, EOS likely (samples leave early, at different
    steps) or impossible (every step runs)."""

    @pytest.mark.parametrize('beam_size', [1, 2, 3, 5])
    @pytest.mark.parametrize('batch', [1, 4, 9])
    @pytest.mark.parametrize('eos_bias', [0.0, 2.0, -1e4])
    def test_same_ids_and_scores(self, beam_size, batch, eos_bias):
        for seed in range(3):
            decoder = make_decoder(seed=seed, vocab_size=11, sharpen=4.0)
            with torch.no_grad():
                decoder.predictor[1].bias[decoder.eos_id] += eos_bias
            memory, mask = make_memory(seed=30 + seed, batch=batch,
                                       length=7)
            mask[:, 3] = False  # a masked position inside every row
            ids, scores = decoder.generate(memory, mask, beam_size=beam_size,
                                           max_len=7)
            ref_ids, ref_scores, _ = previous_search(decoder, memory, mask,
                                                     beam_size, 7)
            assert torch.equal(ids, ref_ids), (seed, ids, ref_ids)
            torch.testing.assert_close(scores, ref_scores, atol=1e-5,
                                       rtol=0)

    def test_samples_leave_at_different_steps(self):
        """The case the batch shrinking must get right: some samples end
        at once, others run to max_len; only unfinished beams are decoded
        (one per sample at the first step), for as many steps as before."""
        decoder = make_decoder(seed=3, vocab_size=11, sharpen=4.0)
        memory, mask = make_memory(seed=43, batch=9, length=7)
        mask[:, 3] = False
        rows = []  # decoded rows at each step
        step = decoder.step

        def counted(tokens, cache):
            rows.append(len(tokens))
            return step(tokens, cache)

        decoder.step = counted
        ids, _ = decoder.generate(memory, mask, beam_size=3, max_len=7)
        del decoder.step
        lengths = ((ids == decoder.eos_id).cumsum(1) == 0).sum(1)  # (B,)
        assert lengths.min() < 2 and lengths.max() == 7, lengths
        ref_ids, _, ref_steps = previous_search(decoder, memory, mask, 3, 7)
        assert torch.equal(ids, ref_ids)
        assert len(rows) == ref_steps == search_steps(
            decoder, memory, mask, beam_size=3, max_len=7)
        assert rows[0] == 9 and max(rows) <= 27 and rows[-1] < 27, rows


class TestSearch:

    @pytest.mark.parametrize('seed', [0, 1, 2])
    def test_large_beam_equals_exhaustive_search(self, seed):
        decoder = make_decoder(seed=seed, vocab_size=4)
        memory, mask = make_memory(seed=10 + seed, batch=3)
        assert_large_beam_is_exhaustive(decoder, memory, mask, max_len=4)

    @pytest.mark.parametrize('seed', [0, 1, 2, 3, 4])
    def test_greedy_and_beam_against_recomputation(self, seed):
        decoder = make_decoder(seed=seed, vocab_size=7)
        memory, mask = make_memory(seed=20 + seed, batch=4)
        greedy_scores, beam_scores = assert_search_matches_recomputation(
            decoder, memory, mask, max_len=6)
        # Not a theorem for beam search in general; holds on these seeds.
        assert (beam_scores >= greedy_scores - 1e-6).all()

    @pytest.mark.parametrize('beam_size', [1, 3, 5])
    def test_batched_search_equals_one_sample_at_a_time(self, beam_size):
        decoder = make_decoder(seed=7, vocab_size=8)
        memory, mask = make_memory(seed=8, batch=5)
        ids, scores = decoder.generate(
            memory, mask, beam_size=beam_size, max_len=7)
        for b in range(5):
            one_ids, one_score = decoder.generate(
                memory[b:b + 1], mask[b:b + 1], beam_size=beam_size,
                max_len=7)
            assert one_ids[0].tolist() == ids[b].tolist()
            assert float(one_score) == pytest.approx(float(scores[b]),
                                                     abs=1e-5)

    def test_output_format_and_defaults(self):
        decoder = make_decoder(seed=3, vocab_size=6, max_len=5, beam_size=2)
        memory, mask = make_memory(seed=4, batch=4)
        ids, scores = decoder.generate(memory, mask)
        assert ids.shape == (4, 5) and ids.dtype == torch.long
        assert (scores <= 0).all() and torch.isfinite(scores).all()
        for row in ids.tolist():  # everything after the first EOS is EOS
            if 0 in row:
                assert set(row[row.index(0):]) == {0}
        again = decoder.generate(memory, mask)
        assert torch.equal(ids, again[0]) and torch.equal(scores, again[1])
        with pytest.raises(ValueError, match='beam_size'):
            decoder.generate(memory, mask, beam_size=0)
