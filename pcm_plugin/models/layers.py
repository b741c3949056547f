"""Transformer building blocks shared by the encoder and the decoder."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# The official (X-modaler) code adds -10000 to masked attention logits rather
# than -inf, so a row with every key masked stays finite.
MASK_VALUE = -10000.0
ATTN_IMPLS = ('eager', 'sdpa')


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a boolean key mask.

    Two implementations of the same function, equal within float32
    round-off, fully masked rows included (tests/test_models/
    test_attention.py):

    * ``'eager'``: matmul, ``masked_fill``, softmax, dropout, matmul, as the
      official code. The default, and the reference.
    * ``'sdpa'``: :func:`torch.nn.functional.scaled_dot_product_attention`,
      which picks a fused kernel (on CUDA: memory-efficient attention with
      a mask, FlashAttention without one; on CPU a fused C++ kernel), never
      materialising the (B, H, Lq, Lk) probabilities for autograd. Use it for
      GPU training and decoding. On CPU measure first: at the COCO size it
      measured no faster than eager (docs/benchmarks/speed.md).
      Attention dropout still applies in training (``dropout_p``), with
      other random draws than ``'eager'``'s.

    Shapes use the glossary of docs/method.md §3.0: Lq queries attend over
    Lk keys (L in the encoder and in cross-attention, T + 1 or the cache's
    S in the decoder's self-attention), with H heads of width Dh = d / H.

    Args:
        embed_dim (int): Width d.
        num_heads (int): Heads H; d must divide evenly.
        attn_drop (float): Dropout on the attention probabilities.
        attn_impl (str): ``'eager'`` or ``'sdpa'``. Defaults to 'eager'.
    """

    def __init__(self, *, embed_dim: int, num_heads: int,
                 attn_drop: float = 0.0, attn_impl: str = 'eager'):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by '
                             f'num_heads {num_heads}')
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got '
                             f'{attn_impl!r}')
        self.attn_impl = attn_impl
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(attn_drop)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Lq, d) queries (or (B, Lk, d) keys, values) -> heads."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads,
                      self.head_dim).transpose(1, 2)  # (B, H, Lq, Dh)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention over already projected, head-split q/k/v.

        Args:
            q (Tensor): (B, H, Lq, Dh). k, v (Tensor): (B, H, Lk, Dh).
            mask (Tensor, optional): bool, True = visible, broadcastable to
                (B, H, Lq, Lk): (B, Lk) key masks become (B, 1, 1, Lk).

        Returns:
            Tensor: (B, Lq, d).
        """
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, None, :]  # (B, 1, 1, Lk)
        if self.attn_impl == 'sdpa':
            out = self.sdpa_attention(q, k, v, mask)  # (B, H, Lq, Dh)
        else:
            out = self.eager_attention(q, k, v, mask)  # (B, H, Lq, Dh)
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, -1)  # (B, Lq, d)
        return self.out_proj(out)

    def eager_attention(self, q: torch.Tensor, k: torch.Tensor,
                        v: torch.Tensor,
                        mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Reference attention: matmul, ``masked_fill``, softmax, dropout.

        Args:
            q, k, v, mask: As in :meth:`attend`, the mask 4-d or None.

        Returns:
            Tensor: (B, H, Lq, Dh).
        """
        scale = self.head_dim ** 0.5
        scores = q @ k.transpose(-2, -1) / scale  # (B, H, Lq, Lk)
        if mask is not None:
            scores = scores.masked_fill(~mask, MASK_VALUE)
        probs = self.attn_drop(scores.softmax(dim=-1))  # (B, H, Lq, Lk)
        return probs @ v  # (B, H, Lq, Dh)

    def sdpa_attention(self, q: torch.Tensor, k: torch.Tensor,
                       v: torch.Tensor,
                       mask: Optional[torch.Tensor]) -> torch.Tensor:
        """:meth:`eager_attention` (same arguments, same result) through
        the fused SDPA kernels."""
        bias = None
        if mask is not None:
            # A float mask is *added* to the scores, while eager attention
            # *replaces* masked scores by -10000. Both give the masked keys
            # weight exp(-10000) = 0 wherever one key is visible, but a row
            # with every key masked is a uniform average in eager attention
            # and would be a plain softmax over all keys here. That row gets
            # a zero query and no bias instead: every key scores exactly 0,
            # the same uniform average, and no gradient flows to q or k, as
            # in eager attention. (Scores of -10000 would also give uniform
            # weights, but the backward pass recomputes them from a
            # logsumexp near -10000, where float32 keeps 3 decimals.)
            dead = ~mask.any(dim=-1, keepdim=True)  # (B, 1|H, Lq|1, 1)
            q = q.masked_fill(dead, 0.0)
            bias = torch.zeros(mask.shape, dtype=q.dtype,
                               device=q.device).masked_fill(
                                   ~(mask | dead), MASK_VALUE)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop.p if self.training else 0.0)

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, Lq, d) queries over (B, Lk, d) keys/values -> (B, Lq, d)."""
        q = self.split_heads(self.q_proj(query))  # (B, H, Lq, Dh)
        k = self.split_heads(self.k_proj(key))  # (B, H, Lk, Dh)
        v = self.split_heads(self.v_proj(value))  # (B, H, Lk, Dh)
        return self.attend(q, k, v, mask)


class FeedForward(nn.Module):
    """``Linear -> ReLU -> Dropout -> Linear -> Dropout``."""

    def __init__(self, *, embed_dim: int, ffn_dim: int, act_drop: float,
                 out_drop: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embed_dim, ffn_dim), nn.ReLU(), nn.Dropout(act_drop),
            nn.Linear(ffn_dim, embed_dim), nn.Dropout(out_drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
