"""SynC re-pairing of synthetic image-caption pairs: the pure algorithm.

SynC (Kim et al., ACM MM 2025) refines a synthetic training set before
PCM-Net trains on it: every caption takes the best-matching image already in
the pool (not necessarily its own), scored by whether the image retrieves
the caption back, and the worst pairs are dropped. The four steps, on unit
embeddings (rows of ``T`` = captions in the contrastive model's text space,
``V`` = images, ``S`` = captions in a sentence encoder's space):

1. ``cand(i)``: the K images with the largest ``T_i . V_j`` (text -> image);
2. ``back(j)``: the K_r captions with the largest ``V_j . T_r``;
3. ``f(i, j) = max_{r in back(j)} S_r . S_i``; caption i takes the first
   candidate (in text -> image order) with the largest f;
4. keep the ``floor(tau * N)`` captions with the largest score.

Everything here is a function of arrays, with one shape vocabulary: ``c``
captions in a chunk, ``N`` captions, ``M`` images, ``K``/``Kr`` neighbours,
``d``/``ds`` embedding widths. Steps 1 and 2 share one similarity matrix,
streamed in caption chunks: :func:`top_k_rows` keeps each chunk's row
neighbours and :func:`merge_top_k` folds its column neighbours into a
running ``(M, Kr)`` state, so memory is ``c x M`` whatever N is.

Determinism: every top-k orders by (value descending, index ascending),
boundary ties included, so chunk sizes, the number of ranks and the order
chunks are folded in never change a result (tests check each).
"""
from typing import Dict, Tuple

import torch

# A column state's empty slot: below every cosine, after every index.
EMPTY = float('-inf')


def canonical_order(values: torch.Tensor, indices: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by value descending, ties by index ascending.

    Args:
        values (Tensor): (R, k) float.
        indices (Tensor): (R, k) int64.

    Returns:
        tuple: the sorted ``(values, indices)``, both (R, k).
    """
    indices, by_index = indices.sort(dim=1)  # (R, k)
    values = values.gather(1, by_index)  # (R, k)
    values, by_value = values.sort(dim=1, descending=True, stable=True)
    return values, indices.gather(1, by_value)  # (R, k), (R, k)


def top_k_rows(sims: torch.Tensor, k: int, *, offset: int = 0
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of every row, ties to the smaller index.

    ``torch.topk`` leaves open which of several equal values it returns at
    the k-th place; rows where that matters (more than k entries reach the
    k-th value: duplicate images or captions) are redone exactly.

    Args:
        sims (Tensor): (R, C) similarities, finite.
        k (int): Neighbours per row, ``1 <= k <= C``.
        offset (int): Added to the column indices (a chunk's first index).

    Returns:
        tuple: ``values`` (R, k) float and ``indices`` (R, k) int64, in
        canonical order.
    """
    values, indices = sims.topk(k, dim=1)  # (R, k)
    kth = values[:, -1:]  # (R, 1)
    ambiguous = ((sims >= kth).sum(dim=1) > k).nonzero().flatten()
    for row in ambiguous.tolist():
        above = (sims[row] > kth[row]).nonzero().flatten()
        tied = (sims[row] == kth[row]).nonzero().flatten()
        indices[row] = torch.cat([above, tied[:k - len(above)]])
        values[row] = sims[row, indices[row]]
    return canonical_order(values, indices + offset)


def empty_columns(num_images: int, k: int, *, sentinel: int
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """A running column state with no neighbours yet.

    Args:
        num_images (int): M.
        k (int): Kr.
        sentinel (int): An index after every real one (N captions: N).

    Returns:
        tuple: ``values`` (M, k) of -inf and ``indices`` (M, k) of sentinel.
    """
    return (torch.full((num_images, k), EMPTY),
            torch.full((num_images, k), sentinel, dtype=torch.long))


def merge_top_k(state: Tuple[torch.Tensor, torch.Tensor],
                new: Tuple[torch.Tensor, torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold new neighbour candidates into a running top-k per row.

    The two sides hold disjoint indices (different caption chunks), so the
    result is the top-k of their union whatever order chunks arrive in.

    Args:
        state (tuple): ``(values, indices)``, (M, k) each.
        new (tuple): ``(values, indices)``, (M, k') each.

    Returns:
        tuple: the merged ``(values, indices)``, (M, k).
    """
    k = state[0].shape[1]
    values = torch.cat([state[0], new[0]], dim=1)  # (M, k + k')
    indices = torch.cat([state[1], new[1]], dim=1)  # (M, k + k')
    values, indices = canonical_order(values, indices)
    return values[:, :k], indices[:, :k]


def chunk_neighbours(text: torch.Tensor, images: torch.Tensor, *, k: int,
                     k_back: int, offset: int):
    """Steps 1-2 for one chunk of captions against the whole image pool.

    Args:
        text (Tensor): (c, d) unit caption embeddings (captions
            ``offset .. offset + c``).
        images (Tensor): (M, d) unit image embeddings.
        k (int): K, candidate images per caption.
        k_back (int): Kr, captions kept per image (column neighbours).
        offset (int): Index of the chunk's first caption.

    Returns:
        tuple: ``cand_sims`` (c, K), ``cand`` (c, K) image indices, and
        the chunk's column neighbours ``(values, indices)``, (M, min(Kr, c))
        each, for :func:`merge_top_k`.
    """
    sims = text @ images.T  # (c, M)
    cand_sims, cand = top_k_rows(sims, k)  # (c, K), (c, K)
    columns = top_k_rows(sims.T, min(k_back, sims.shape[0]),
                         offset=offset)  # (M, Kr), (M, Kr)
    return cand_sims, cand, columns


def cycle_scores(cand: torch.Tensor, back: torch.Tensor,
                 sentences: torch.Tensor, rows: torch.Tensor
                 ) -> torch.Tensor:
    """Step 3's score ``f(i, j)`` of every candidate of some captions.

    Computed in fp32 and rounded to fp16 precision, the resolution the
    reference implementation compares at (it runs in fp16): scores that
    differ by summation order only tie, and the better text -> image rank
    wins the tie, on any device.

    Args:
        cand (Tensor): (c, K) candidate image indices of captions ``rows``.
        back (Tensor): (M, Kr) caption indices each image retrieves.
        sentences (Tensor): (N, ds) unit sentence embeddings of all
            captions.
        rows (Tensor): (c,) the captions' indices.

    Returns:
        Tensor: (c, K) float32 scores.
    """
    retrieved = sentences[back[cand]]  # (c, K, Kr, ds)
    own = sentences[rows][:, None, None, :]  # (c, 1, 1, ds)
    scores = (retrieved * own).sum(dim=-1).amax(dim=-1)  # (c, K)
    return scores.half().float()


def choose_images(cand: torch.Tensor, scores: torch.Tensor
                  ) -> torch.Tensor:
    """Each caption's choice: the first candidate with the largest score.

    Args:
        cand (Tensor): (c, K) candidates in text -> image order.
        scores (Tensor): (c, K).

    Returns:
        Tensor: (c,) int64 positions in ``cand`` (first maximum: ties go to
        the better text -> image rank).
    """
    return scores.argmax(dim=1)  # (c,)


def search(text: torch.Tensor, images: torch.Tensor, *, k: int,
           k_back: int, chunk_size: int) -> Dict[str, torch.Tensor]:
    """Steps 1-2 in memory, chunk by chunk (the pipeline's
    :mod:`~pcm_plugin.data_prep.refine_search` does the same on disk,
    sharded and resumable).

    Args:
        text (Tensor): (N, d) unit caption embeddings.
        images (Tensor): (M, d) unit image embeddings.
        k (int): K. k_back (int): Kr. chunk_size (int): c.

    Returns:
        dict: ``cand`` / ``cand_sims`` (N, K) and ``back`` (M, Kr).
    """
    back = empty_columns(len(images), k_back, sentinel=len(text))
    cand, cand_sims = [], []
    for start in range(0, len(text), chunk_size):
        sims, idx, columns = chunk_neighbours(
            text[start:start + chunk_size], images, k=k, k_back=k_back,
            offset=start)
        cand.append(idx)
        cand_sims.append(sims)
        back = merge_top_k(back, columns)
    return dict(cand=torch.cat(cand), cand_sims=torch.cat(cand_sims),
                back=back[1])


def assign(neigh: Dict[str, torch.Tensor], own: torch.Tensor, *,
           mapping: str = 'one_to_many', score: str = 'cycle',
           chunk_size: int = 1024) -> Dict[str, torch.Tensor]:
    """Step 3 for every caption: its image, score and CLIP cosine.

    Args:
        neigh (dict): ``cand``, ``cand_sims`` (N, K), ``back`` (M, Kr),
            ``sentences`` (N, ds) unit rows and ``own_sims`` (N,), each
            caption's cosine with its own image.
        own (Tensor): (N,) each caption's own image.
        mapping (str): ``'one_to_many'`` (choose among the K candidates)
            or ``'one_to_one'`` (keep the own image; score it).
        score (str): ``'cycle'`` (f) or ``'clip'`` (``T_i . V_j``).
        chunk_size (int): Captions scored at once (memory).

    Returns:
        dict: ``image`` (N,) int64, ``score`` (N,) and ``clip_cos`` (N,)
        float32: the chosen pair's ``T_i . V_j``.
    """
    num = len(own)
    out = dict(image=torch.empty(num, dtype=torch.long),
               score=torch.empty(num), clip_cos=torch.empty(num))
    for start in range(0, num, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, num))  # (c,)
        if mapping == 'one_to_one':
            cand = own[rows][:, None]  # (c, 1)
            sims = neigh['own_sims'][rows][:, None]  # (c, 1)
        else:
            cand, sims = neigh['cand'][rows], neigh['cand_sims'][rows]
        if score == 'cycle':
            scores = cycle_scores(cand, neigh['back'], neigh['sentences'],
                                  rows)  # (c, K)
        else:  # rounded like the cycle score, for the same tie rule
            scores = sims.half().float()  # (c, K)
        best = choose_images(cand, scores)[:, None]  # (c, 1)
        out['image'][rows] = cand.gather(1, best)[:, 0]
        out['score'][rows] = scores.gather(1, best)[:, 0]
        out['clip_cos'][rows] = sims.gather(1, best)[:, 0]
    return out


def keep_best(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """Step 4: indices of the ``floor(tau * N)`` best-scored captions.

    Ties go to the earlier caption (a stable sort); the result is in
    caption order.

    Args:
        scores (Tensor): (N,) scores.
        tau (float): Kept fraction, in (0, 1].

    Returns:
        Tensor: (floor(tau N),) int64 caption indices, ascending.
    """
    if not 0 < tau <= 1:
        raise ValueError(f'tau must be in (0, 1], got {tau}')
    order = scores.sort(descending=True, stable=True).indices  # (N,)
    return order[:int(tau * len(scores))].sort().values
