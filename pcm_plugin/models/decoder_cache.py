"""Key/value cache of incremental decoding (:class:`DecoderCache`).

The memory's masked positions are dropped before its keys and values are
computed (:func:`drop_masked_positions`, exactly equivalent), the memory
keys are laid out once for the steps' products (:func:`stored_kv`), and the
self-attention cache is preallocated, written in place and reordered into
spare buffers (:func:`reorder_cache`) instead of being concatenated and
copied every step. :mod:`.beam_search` drives it.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def drop_masked_positions(x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Remove masked positions from a batch of sequences, where that is
    exactly equivalent for attention that hides them.

    Each row keeps its visible positions, in order, at the front; rows are
    padded (mask False) to the longest. A masked key's score is replaced by
    -10000, so its weight ``exp(-10000 - max)`` is exactly 0 in float32
    wherever a visible key of its row scores above -9,900 (any trained or
    random model here), and a masked query's output is never read: the
    attention of the visible positions is the same function of fewer
    keys. At the COCO size 44 of the 99 memory
    positions (the unselected textual tokens) go. Nothing is dropped when
    a row has no visible position (its attention is a uniform average over
    *all* keys) or when the longest row is the whole length.

    Args:
        x (Tensor): ``(B, L, d)`` sequences.
        mask (Tensor): ``(B, L)`` bool, True = visible.

    Returns:
        tuple[Tensor, Tensor]: ``x`` ``(B, L', d)`` and ``mask``
        ``(B, L')`` with L' the most visible positions of a row; the
        inputs themselves when nothing is dropped.
    """
    counts = mask.sum(dim=1)  # (B,)
    if counts.numel() == 0 or int(counts.min()) == 0:
        return x, mask
    length = int(counts.max())
    if length == mask.size(1):
        return x, mask
    # A stable sort of "masked" puts the visible positions first, in order.
    order = (~mask).to(torch.uint8).argsort(
        dim=1, stable=True)[:, :length]  # (B, L')
    x = x.gather(1, order[..., None].expand(-1, -1, x.size(-1)))  # (B,L',d)
    return x, mask.gather(1, order)  # (B, L')


@dataclass
class DecoderCache:
    """State of incremental decoding: R rows (hypotheses) over B' memories.

    Shape letters as in docs/method.md §3.0: B' samples still decoded, R
    rows (beams still decoded), S steps decoded so far (``length``), T_max
    steps preallocated.

    The rows' cross-attention queries are laid out in a grid of ``width``
    slots per memory row (the beams of a sample): the queries of one
    memory row attend to its keys together, which are stored once, not
    once per beam. A row that has nothing left to decode (a finished beam)
    leaves the rows and its slot stays empty.

    Attributes:
        self_kv (list[tuple[Tensor, Tensor]]): Per layer, preallocated
            self-attention keys and values, each ``(T_max, R, H, Dh)``,
            step-major (the past of all rows up to step t is the contiguous
            block ``[:t]``); steps from ``length`` (S) on are unused.
        cross_kv (list[tuple[Tensor, Tensor]]): Per layer, the
            cross-attention keys and values of the memory, each
            ``(B', H, L, Dh)``; computed once per ``generate`` call.
        memory_mask (Tensor): ``(B', L)`` bool, True = visible.
        slots (Tensor, optional): ``(R,)`` long: row r is query slot
            ``slots[r]`` of the ``(B', W)`` grid (W = ``width``), i.e. it
            reads memory row ``slots[r] // width``. None: every slot is a
            row, in order (R = B' * W).
        width (int): Query slots per memory row.
        length (int): Tokens already decoded (= position of the next one).
        spare_kv (list[list[Tensor]]): Buffers of the shapes of
            ``self_kv`` that reordering writes into (then the two swap),
            so that steps reuse memory instead of allocating it.
    """
    self_kv: List[Tuple[Tensor, Tensor]]
    cross_kv: List[Tuple[Tensor, Tensor]]
    memory_mask: Tensor
    slots: Optional[Tensor]
    width: int
    length: int = 0
    spare_kv: List[List[Optional[Tensor]]] = field(default_factory=list)


def stored_kv(key: Tensor, value: Tensor) -> Tuple[Tensor, Tensor]:
    """Memory keys/values laid out for the steps' products, once.

    Args:
        key (Tensor): ``(B', H, L, Dh)`` (any strides).
        value (Tensor): ``(B', H, L, Dh)`` (any strides).

    Returns:
        tuple[Tensor, Tensor]: The same values: ``key`` a view of a
        contiguous ``(B', H, Dh, L)``, which ``q @ key.transpose(-2, -1)``
        reads as is (measured faster than the other layout), and ``value``
        contiguous; otherwise every step's matmul would copy them.
    """
    key = key.transpose(-2, -1).contiguous().transpose(-2, -1)
    return key, value.contiguous()


def reorder_cache(cache: DecoderCache, rows: Tensor, *,
                  slots: Optional[Tensor] = None,
                  memories: Optional[Tensor] = None) -> None:
    """Select / repeat cached rows in place: new row i = old ``rows[i]``.

    Args:
        cache (DecoderCache): Cache of R rows over B' memory rows.
        rows (Tensor): ``(new R,)`` long row indices.
        slots (Tensor, optional): ``(new R,)`` the new rows' query slots
            (numbered after ``memories``' selection); None: every slot
            is a row, in order. Defaults to None.
        memories (Tensor, optional): ``(new B',)`` memory rows to keep (those
            of samples still decoded); None keeps all. Defaults to None.
    """
    steps = cache.length
    for layer, (kv, spare) in enumerate(zip(cache.self_kv,
                                            cache.spare_kv)):
        moved = []
        for i, past in enumerate(kv):
            shape = (past.size(0), rows.numel(), *past.shape[2:])
            out = spare[i]
            if out is None or out.shape != shape:
                out = past.new_empty(shape)
            # Only the steps decoded so far, written into the spare
            # buffer: its block [:steps] is contiguous, as ``out=``
            # needs.
            torch.index_select(past[:steps], 1, rows, out=out[:steps])
            moved.append(out)
            spare[i] = past
        cache.self_kv[layer] = tuple(moved)
    if memories is not None:
        # Selected through the transposed key, which keeps the layout
        # of :func:`stored_kv`.
        cache.cross_kv = [
            (key.transpose(-2, -1).index_select(0, memories).transpose(
                -2, -1), value.index_select(0, memories))
            for key, value in cache.cross_kv]  # (new B', H, L, Dh) each
        cache.memory_mask = cache.memory_mask.index_select(0, memories)
    cache.slots = slots
