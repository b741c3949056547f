"""Tests for pcm_plugin.models.caption_decoder (docs/method.md §3.7-3.8)."""
import itertools
import math

import pytest
import torch

TINY = dict(embed_dim=16, num_layers=2, num_heads=2, ffn_dim=32)


def make_decoder(seed: int = 0, vocab_size: int = 7, sharpen: float = 3.0,
                 **kwargs):
    """A small random decoder in eval mode.

    The predictor weights are scaled by ``sharpen`` so that next-word
    distributions are peaked enough for EOS and search to matter.
    """
    from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
    torch.manual_seed(seed)
    cfg = dict(TINY, vocab_size=vocab_size)
    cfg.update(kwargs)
    decoder = CaptionTransformerDecoder(**cfg)
    with torch.no_grad():
        decoder.predictor[1].weight.mul_(sharpen)
    return decoder.eval()


def make_memory(seed: int, batch: int = 3, length: int = 5, dim: int = 16):
    """Random memory and a mask with a different visible count per row."""
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(batch, length, dim, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.bool)
    for row in range(batch):
        mask[row, length - row % length:] = False  # (B, L)
    mask[:, 0] = True
    return memory, mask


def sequence_log_probs(decoder, seqs, memory, mask):
    """Summed log-prob of each of ``seqs`` (lists of ids) for one sample.

    One full forward, no cache: sequences are right-padded, which cannot
    change the logits of earlier positions (causal mask).
    """
    max_len = max(len(s) for s in seqs)
    ids = torch.tensor([[decoder.bos_id] + pad_eos(s, max_len, 0)[:-1]
                        for s in seqs])  # (S, T)
    targets = torch.tensor([pad_eos(s, max_len, 0) for s in seqs])  # (S, T)
    valid = torch.tensor([[t < len(s) for t in range(max_len)]
                          for s in seqs])  # (S, T)
    num = len(seqs)
    with torch.no_grad():
        logits = decoder(ids, memory.expand(num, -1, -1),
                         mask.expand(num, -1))  # (S, T, V)
    picked = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    return (picked * valid).sum(-1).tolist()  # (S,)


def all_sequences(vocab_size: int, max_len: int, eos: int):
    """Every sequence a search can return: ends at EOS or at max_len."""
    words = [w for w in range(vocab_size) if w != eos]
    for length in range(max_len):  # EOS-terminated, `length` words first
        for prefix in itertools.product(words, repeat=length):
            yield list(prefix) + [eos]
    yield from (list(s) for s in itertools.product(words, repeat=max_len))


def pad_eos(seq, max_len: int, eos: int):
    return list(seq) + [eos] * (max_len - len(seq))


def greedy_by_recomputation(decoder, memory, mask, max_len):
    """Greedy decoding of one sample with a full forward at every step."""
    seq, score = [], 0.0
    for _ in range(max_len):
        ids = torch.tensor([[decoder.bos_id] + seq])  # (1, t + 1)
        with torch.no_grad():
            log_probs = decoder(ids, memory, mask)[0, -1].log_softmax(-1)
        word = int(log_probs.argmax())
        seq.append(word)
        score += float(log_probs[word])
        if word == decoder.eos_id:
            break
    return pad_eos(seq, max_len, decoder.eos_id), score


def assert_large_beam_is_exhaustive(decoder, memory, mask, *, max_len):
    """A beam wider than the number of hypotheses returns the best of all
    sequences (scored by full forwards), for each of the samples.

    Args:
        decoder: Any decoder with ``generate``, ``forward(ids, memory,
            mask)``, ``vocab_size``, ``bos_id`` and ``eos_id`` 0.
        memory (Tensor): ``(B, L, d)``.
        mask (Tensor): ``(B, L)`` bool.
        max_len (int): Decoding steps.
    """
    eos = decoder.eos_id
    sequences = list(all_sequences(decoder.vocab_size, max_len, eos))
    # Far fewer hypotheses at any step than 128 for vocabularies of 4.
    ids, scores = decoder.generate(memory, mask, beam_size=128,
                                   max_len=max_len)
    assert ids.shape == (len(memory), max_len)
    assert scores.shape == (len(memory), )
    for b in range(len(memory)):
        scored = list(zip(sequence_log_probs(
            decoder, sequences, memory[b:b + 1], mask[b:b + 1]), sequences))
        best_score, best_seq = max(scored)
        second = sorted(s for s, _ in scored)[-2]
        assert best_score - second > 1e-4, 'near tie: pick another seed'
        assert ids[b].tolist() == pad_eos(best_seq, max_len, eos)
        assert float(scores[b]) == pytest.approx(best_score, abs=1e-5)


def assert_search_matches_recomputation(decoder, memory, mask, *, max_len):
    """Cached greedy search = a full forward per step; each returned beam
    score = the full forward's log-probability of the returned ids.

    Returns:
        tuple[Tensor, Tensor]: greedy and beam (width 3) scores, (B,).
    """
    greedy_ids, greedy_scores = decoder.generate(
        memory, mask, beam_size=1, max_len=max_len)
    beam_ids, beam_scores = decoder.generate(
        memory, mask, beam_size=3, max_len=max_len)
    for b in range(len(memory)):
        one = (memory[b:b + 1], mask[b:b + 1])
        seq, score = greedy_by_recomputation(decoder, *one, max_len)
        assert greedy_ids[b].tolist() == seq
        assert float(greedy_scores[b]) == pytest.approx(score, abs=1e-5)
        # Returned beam score = log-prob of the returned ids.
        ids = beam_ids[b].tolist()
        if decoder.eos_id in ids:
            ids = ids[:ids.index(decoder.eos_id) + 1]
        assert float(beam_scores[b]) == pytest.approx(
            sequence_log_probs(decoder, [ids], *one)[0], abs=1e-5)
    return greedy_scores, beam_scores


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
        from pcm_plugin.models.decoder_cache import reorder_cache
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
        from pcm_plugin.models.decoder_cache import drop_masked_positions
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
        from pcm_plugin.models.decoder_cache import drop_masked_positions
        memory, mask = make_memory(seed=1, batch=3, length=5)
        full = torch.ones_like(mask)
        assert drop_masked_positions(memory, full)[0] is memory
        # Row 0 is whole: no shorter layout exists.
        assert drop_masked_positions(memory, mask)[0] is memory
        # A row with no visible key averages *all* keys: kept as is.
        mask[0, 1:] = False
        mask[1] = False
        assert drop_masked_positions(memory, mask)[1] is mask


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
        from pcm_plugin.testing.decoding import (
            search_steps,
        )
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
        from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
        from pcm_plugin.registry import MODELS
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

    def test_default_layer_parameter_count(self):
        # docs/method.md §3.7: the 3 decoder layers hold 12.6 M parameters.
        from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder
        decoder = CaptionTransformerDecoder(vocab_size=3)
        count = sum(p.numel() for p in decoder.layers.parameters())
        per_layer = 2 * 4 * (512 * 512 + 512) + (
            2 * 512 * 2048 + 2048 + 512) + 3 * 2 * 512
        assert count == 3 * per_layer == 12_612_096

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
