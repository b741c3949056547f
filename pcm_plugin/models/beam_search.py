"""Batched beam search over the K/V cache of :mod:`.decoder_cache`.

The search follows the official PCM-Net code (docs/method.md §3.8): beam
size 3 and at most 20 steps by default, scores are summed
log-probabilities with no length penalty, and a beam that emits EOS is
frozen (its only continuation is EOS at zero cost), so it competes with
the live hypotheses until the end.

It returns what decoding every beam at every step would, doing less: one
beam per sample at the first step (the W beams start identical), later only
the beams that have not emitted EOS and whose score is finite; a sample
whose beams have all finished leaves the batch with its result.
:func:`beam_candidates` lays the scores out as the full ``(B', W * V)``
matrix, so ``topk`` breaks ties exactly as it would there.

Shapes use the glossary of docs/method.md §3.0: B' samples are still
decoded (B at the start, fewer as samples finish), and a step feeds the
decoder R rows, one per beam still decoded (R <= B' * W).
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .decoder_cache import DecoderCache


@torch.no_grad()
def beam_search(decoder, memory: Tensor, memory_mask: Tensor, *,
                beam: int, steps: int,
                all_beams: bool = False) -> Tuple[Tensor, Tensor]:
    """Batched beam search with KV cache (beam 1 = greedy).

    Call with the decoder in eval mode for deterministic output.
    ``all_beams`` returns every final beam instead of the best (for a
    re-ranker, :mod:`.clip_reranker`); the search is the same, so the
    first beam is the one returned without it.

    Args:
        decoder (CaptionTransformerDecoder): Gives ``init_cache``,
            ``step``, ``reorder_cache``, ``vocab_size``, ``bos_id`` and
            ``eos_id``; its cache has ``slots``, ``width`` and a
            ``memory_mask`` of one row per sample still decoded (any
            decoder with these searches, e.g.
            :class:`~pcm_plugin.models.gpt2_prefix_decoder.
            GPT2PrefixDecoder`).
        memory (Tensor): ``(B, L, d)`` encoder output.
        memory_mask (Tensor): ``(B, L)`` bool, True = visible.
        beam (int): Beam size W >= 1.
        steps (int): Decoding steps T >= 1.
        all_beams (bool): Return the W final beams of each sample, best
            first (``topk``'s order), instead of the best one. A beam
            whose score is -inf (fewer than W finite candidates, tiny
            vocabularies only) is returned with that score. Defaults to
            False.

    Returns:
        tuple[Tensor, Tensor]: ``ids`` (B, T) long, without BOS, with the
        EOS token if emitted and ``eos_id`` after it; ``scores`` (B,)
        summed log-probabilities of the returned ids (EOS included,
        padding not counted). With ``all_beams``: ``ids`` (B, W, T) and
        ``scores`` (B, W).
    """
    batch, vocab = memory.size(0), decoder.vocab_size
    device = memory.device
    cache = decoder.init_cache(memory, memory_mask, width=beam,
                               max_len=steps)
    # Each sample's result: its best beam, or with all_beams every beam.
    keep = keep_all if all_beams else keep_best
    kept_shape = (batch, beam) if all_beams else (batch, )
    result_ids = torch.full(kept_shape + (steps, ), decoder.eos_id,
                            dtype=torch.long, device=device)  # (B, [W,] T)
    result_scores = torch.zeros(kept_shape, device=device)  # (B, [W])
    # Search state of the B' samples still decoded; `samples` holds
    # their indices in the batch.
    samples = torch.arange(batch, device=device)  # (B',)
    scores = torch.full((batch, beam), -math.inf,
                        device=device)  # (B', W), float32
    scores[:, 0] = 0.0
    finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
    ids = torch.full((batch, beam, steps), decoder.eos_id,
                     dtype=torch.long, device=device)  # (B', W, T)
    tokens = torch.full((batch, ), decoder.bos_id, dtype=torch.long,
                        device=device)  # (R,)
    for t in range(steps):
        log_probs = decoder.step(tokens, cache).float().log_softmax(
            dim=-1)  # (R, V)
        candidates = beam_candidates(
            log_probs, scores, finished, cache.slots,
            eos_id=decoder.eos_id)  # (B', W * V)
        scores, flat = candidates.topk(beam, dim=-1)  # (B', W)
        parent, word = flat // vocab, flat % vocab  # (B', W) each
        ids = ids.gather(1, parent[..., None].expand(-1, -1, steps))
        ids[:, :, t] = word
        finished = finished.gather(1, parent) | (word == decoder.eos_id)
        if t + 1 == steps:
            break
        # A beam needs the decoder while unfinished with a finite
        # score (-inf only where fewer than W candidates were finite).
        live = ~finished & (scores > -math.inf)  # (B', W)
        # Without one, a sample's finite beams are final and keep
        # their order (topk sorts): its result is known now.
        done = ~live.any(dim=1)  # (B',)
        kept = None
        if bool(done.any()):
            keep(result_ids, result_scores, samples[done], ids[done],
                 scores[done])
            if bool(done.all()):
                return result_ids, result_scores
            # The samples kept are the next step's B'.
            kept = (~done).nonzero()[:, 0]  # (B',)
            samples, scores, finished, ids, parent, word, live = (
                v.index_select(0, kept) for v in (
                    samples, scores, finished, ids, parent, word, live))
        live = live.view(-1)  # (B' * W,)
        slots = None if bool(live.all()) else live.nonzero()[:, 0]
        decoder.reorder_cache(
            cache, parent_rows(cache, parent, kept, slots),
            slots=slots, memories=kept)
        tokens = word.view(-1)  # (B' * W,)
        if slots is not None:
            tokens = tokens.index_select(0, slots)  # (R,)
    keep(result_ids, result_scores, samples, ids, scores)
    return result_ids, result_scores


def beam_candidates(log_probs: Tensor, scores: Tensor, finished: Tensor,
                    slots: Optional[Tensor], *, eos_id: int) -> Tensor:
    """Score of every one-word extension of every beam.

    Laid out as the full ``(B', W * V)`` matrix whatever the rows, so
    that ``topk`` sees the same values in the same places (its
    tie-breaking included) as when every beam is decoded: a finished
    beam may only repeat EOS, at zero cost (its score kept); a beam
    with no row has score -inf, and so has each of its extensions.

    Args:
        log_probs (Tensor): ``(R, V)`` next-word log-probabilities of
            the rows (overwritten).
        scores (Tensor): ``(B', W)`` beam scores.
        finished (Tensor): ``(B', W)`` bool, beam already emitted EOS.
        slots (Tensor, optional): ``(R,)`` the rows' beams (flat
            index into ``(B', W)``); None: row r is beam r.
        eos_id (int): End-of-sentence token.

    Returns:
        Tensor: ``(B', W * V)``.
    """
    num, width = scores.shape
    flat = scores.view(-1)  # (B' * W,)
    if slots is None:  # every beam decoded: no finished beam
        return log_probs.add_(flat[:, None]).view(num, -1)
    candidates = log_probs.new_full((num * width, log_probs.size(1)),
                                    -math.inf)  # (B' * W, V)
    candidates.index_copy_(
        0, slots, log_probs.add_(flat.index_select(0, slots)[:, None]))
    done = finished.view(-1).nonzero()[:, 0]  # (finished beams,)
    candidates[done, eos_id] = flat.index_select(0, done)
    return candidates.view(num, -1)  # (B', W * V)


def parent_rows(cache: DecoderCache, parent: Tensor,
                kept: Optional[Tensor],
                slots: Optional[Tensor]) -> Tensor:
    """Cache row of each decoded beam's parent.

    B' counts the samples kept (the next step's), R the next step's rows.

    Args:
        cache (DecoderCache): Before reordering (old slots).
        parent (Tensor): ``(B', W)`` parent beam of each beam, of the
            samples kept.
        kept (Tensor, optional): ``(B',)`` kept samples' old indices;
            None = all kept.
        slots (Tensor, optional): ``(R,)`` the beams to decode (flat
            index into ``(B', W)``); None = all.

    Returns:
        Tensor: ``(R,)`` long rows of the current cache.
    """
    width = cache.width
    base = torch.arange(parent.size(0), device=parent.device) \
        if kept is None else kept  # (B',)
    parent_slot = (base[:, None] * width + parent).view(-1)  # (B' * W,)
    if slots is not None:
        parent_slot = parent_slot.index_select(0, slots)  # (R,)
    if cache.slots is None:  # row r is slot r
        return parent_slot
    # A live beam's parent was live, so it has a row.
    # Indexed by the slots of the samples before the drop.
    row_of_slot = torch.full((cache.memory_mask.size(0) * width, ),
                             -1, dtype=torch.long,
                             device=parent.device)  # (old B' * W,)
    row_of_slot[cache.slots] = torch.arange(
        cache.slots.numel(), device=parent.device)
    return row_of_slot.index_select(0, parent_slot)  # (R,)


def keep_best(result_ids: Tensor, result_scores: Tensor, samples: Tensor,
              ids: Tensor, scores: Tensor) -> None:
    """Write each sample's best beam (the first of equal scores) into
    the results.

    Args:
        result_ids (Tensor): ``(B, T)`` written in place.
        result_scores (Tensor): ``(B,)`` written in place.
        samples (Tensor): ``(B',)`` the samples' batch indices.
        ids (Tensor): ``(B', W, T)`` their beams.
        scores (Tensor): ``(B', W)`` the beams' scores.
    """
    best = scores.argmax(dim=-1)  # (B',)
    index = torch.arange(samples.numel(), device=samples.device)
    result_ids[samples] = ids[index, best]  # (B', T)
    result_scores[samples] = scores[index, best]  # (B',)


def keep_all(result_ids: Tensor, result_scores: Tensor, samples: Tensor,
             ids: Tensor, scores: Tensor) -> None:
    """Write each sample's beams, in their order, into the results.

    Args:
        result_ids (Tensor): ``(B, W, T)`` written in place.
        result_scores (Tensor): ``(B, W)`` written in place.
        samples (Tensor): ``(B',)`` the samples' batch indices.
        ids (Tensor): ``(B', W, T)`` their beams.
        scores (Tensor): ``(B', W)`` the beams' scores.
    """
    result_ids[samples] = ids
    result_scores[samples] = scores
