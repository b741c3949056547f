"""Checks the decoder tests share: small random decoders and memories, and
searches compared with full forwards (also used for the GPT-2 prefix
decoder in test_prefix_captioner.py)."""
import itertools

import pytest
import torch

from pcm_plugin.models.caption_decoder import CaptionTransformerDecoder

TINY = dict(embed_dim=16, num_layers=2, num_heads=2, ffn_dim=32)


def make_decoder(seed: int = 0, vocab_size: int = 7, sharpen: float = 3.0,
                 **kwargs):
    """A small random decoder in eval mode.

    The predictor weights are scaled by ``sharpen`` so that next-word
    distributions are peaked enough for EOS and search to matter.
    """
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
