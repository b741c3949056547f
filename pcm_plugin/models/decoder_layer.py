"""One post-LN layer of the sentence decoder (docs/method.md §3.7).

Masked self-attention, cross-attention to the encoder's memory and the
FFN, each followed by Add & LayerNorm. A cached decoding step writes its
self-attention keys and values into the preallocated cache in place, and
the beams of a sample query their memory together
(:meth:`DecoderLayer.cross_attend`).
"""
from typing import Optional, Tuple

import torch.nn as nn
from torch import Tensor

from .layers import FeedForward, MultiHeadAttention


def project_kv(attn: MultiHeadAttention, x: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values of ``x`` (B, Lk, d), each (B, H, Lk, Dh), to cache."""
    return attn.split_heads(attn.k_proj(x)), attn.split_heads(attn.v_proj(x))


class DecoderLayer(nn.Module):
    """Post-LN layer: masked self-attn, cross-attn, FFN, each Add & LN."""

    def __init__(self, *, embed_dim: int, num_heads: int, ffn_dim: int,
                 attn_drop: float, hidden_drop: float, layer_norm_eps: float,
                 attn_impl: str):
        super().__init__()
        attn = dict(embed_dim=embed_dim, num_heads=num_heads,
                    attn_drop=attn_drop, attn_impl=attn_impl)
        self.self_attn = MultiHeadAttention(**attn)
        self.cross_attn = MultiHeadAttention(**attn)
        self.ffn = FeedForward(
            embed_dim=embed_dim, ffn_dim=ffn_dim, act_drop=hidden_drop,
            out_drop=hidden_drop)
        self.drop = nn.Dropout(hidden_drop)
        self.norm_self = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.norm_cross = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.norm_ffn = nn.LayerNorm(embed_dim, eps=layer_norm_eps)

    def forward(
        self,
        x: Tensor,
        self_mask: Optional[Tensor],
        cross_kv: Tuple[Tensor, Tensor],
        memory_mask: Tensor,
        past_kv: Optional[Tuple[Tensor, Tensor]] = None,
        slots: Optional[Tensor] = None,
        width: int = 1,
    ) -> Tensor:
        """Run the layer on new tokens ``x`` (R, Lq, d).

        Teacher forcing passes the defaults of the last three arguments
        (row r reads memory row r; R = B, Lq = T + 1); a cached decoding
        step passes all (R rows of one new token each, Lq = 1). Letters as
        in docs/method.md §3.0, B' being the memory rows.

        Args:
            x (Tensor): ``(R, Lq, d)`` new tokens.
            self_mask (Tensor, optional): bool, True = visible, broadcast
                to ``(R, H, Lq, Lk)``, Lk being Lq, or S with ``past_kv``;
                None = see every key.
            cross_kv (tuple[Tensor, Tensor]): Memory keys/values, each
                ``(B', H, L, Dh)``.
            memory_mask (Tensor): ``(B', L)`` bool, True = visible.
            past_kv (tuple[Tensor, Tensor], optional): One decoding step
                (Lq = 1): the cached self-attention keys and values of the
                rows, each ``(S, R, H, Dh)`` with this step the last of the
                S, which this token's are written into (in place). None:
                the keys are those of ``x``.
            slots (Tensor, optional): ``(R,)`` query slots in the
                ``(B', W)`` grid (W = ``width``), see :class:`DecoderCache`.
            width (int): Query slots per memory row. Defaults to 1.

        Returns:
            Tensor: ``(R, Lq, d)``.
        """
        sa = self.self_attn
        query = sa.split_heads(sa.q_proj(x))  # (R, H, Lq, Dh)
        key, value = project_kv(sa, x)  # (R, H, Lq, Dh) each
        if past_kv is not None:
            # Written in place: no concatenation of the past each step.
            past_kv[0][-1] = key[:, :, 0]  # (R, H, Dh)
            past_kv[1][-1] = value[:, :, 0]  # (R, H, Dh)
            key, value = (p.permute(1, 2, 0, 3)
                          for p in past_kv)  # (R, H, S, Dh) views
        x = self.norm_self(
            x + self.drop(sa.attend(query, key, value, self_mask)))
        x = self.norm_cross(x + self.drop(
            self.cross_attend(x, cross_kv, memory_mask, slots, width)))
        return self.norm_ffn(x + self.ffn(x))

    def cross_attend(self, x: Tensor, cross_kv: Tuple[Tensor, Tensor],
                     memory_mask: Tensor, slots: Optional[Tensor],
                     width: int) -> Tensor:
        """Cross-attention of rows grouped by memory row.

        The ``width`` queries of a memory row (its beams) are one
        ``(W * Lq)``-row matrix against its keys, instead of ``W``
        one-row products each reading a copy of the same keys: the step's
        attention is then a fraction of its time (at the COCO size, one
        query per row made it the second cost after the Linear layers).

        Args:
            x (Tensor): ``(R, Lq, d)`` queries' input.
            cross_kv (tuple[Tensor, Tensor]): Each ``(B', H, L, Dh)``.
            memory_mask (Tensor): ``(B', L)`` bool.
            slots (Tensor, optional): ``(R,)`` grid slots; empty slots get
                a zero query whose output is dropped.
            width (int): Slots W per memory row.

        Returns:
            Tensor: ``(R, Lq, d)``, output projection included.
        """
        ca = self.cross_attn
        _, length, dim = x.shape
        query = ca.q_proj(x)  # (R, Lq, d)
        if slots is not None:
            grid = query.new_zeros(memory_mask.size(0) * width, length, dim)
            query = grid.index_copy_(0, slots, query)  # (B' * W, Lq, d)
        query = query.view(-1, width * length, dim)  # (B', W * Lq, d)
        out = ca.attend(ca.split_heads(query), *cross_kv,
                        memory_mask)  # (B', W * Lq, d)
        out = out.view(-1, length, dim)  # (B' * W, Lq, d)
        return out if slots is None else out.index_select(
            0, slots)  # (R, Lq, d)
