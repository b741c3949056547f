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
      materialising the (B, h, T, S) probabilities for autograd. Use it for
      GPU training and decoding. On CPU measure first: at the COCO size on
      the project machine it ran at eager speed (docs/benchmarks.md §2.1).
      Attention dropout still applies in training (``dropout_p``), with
      other random draws than ``'eager'``'s.

    Args:
        embed_dim (int): Width d.
        num_heads (int): Heads; d must divide evenly.
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
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention over already projected, head-split q/k/v.

        Args:
            q (Tensor): (B, h, T, hd). k, v (Tensor): (B, h, S, hd).
            mask (Tensor, optional): bool, True = visible, broadcastable to
                (B, h, T, S): (B, S) key masks become (B, 1, 1, S).

        Returns:
            Tensor: (B, T, d).
        """
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, None, :]  # (B, 1, 1, S)
        if self.attn_impl == 'sdpa':
            out = self.sdpa_attention(q, k, v, mask)  # (B, h, T, hd)
        else:
            out = self.eager_attention(q, k, v, mask)  # (B, h, T, hd)
        B, _, T, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T, -1)  # (B, T, d)
        return self.out_proj(out)

    def eager_attention(self, q: torch.Tensor, k: torch.Tensor,
                        v: torch.Tensor,
                        mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Reference attention: matmul, ``masked_fill``, softmax, dropout.

        Args:
            q, k, v, mask: As in :meth:`attend`, the mask 4-d or None.

        Returns:
            Tensor: (B, h, T, hd).
        """
        scores = q @ k.transpose(-2, -1) / self.head_dim ** 0.5  # (B, h, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, MASK_VALUE)
        probs = self.attn_drop(scores.softmax(dim=-1))  # (B, h, T, S)
        return probs @ v  # (B, h, T, hd)

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
            dead = ~mask.any(dim=-1, keepdim=True)  # (B, 1|h, T|1, 1)
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
        """(B, T, d) queries over (B, S, d) keys/values -> (B, T, d)."""
        q = self.split_heads(self.q_proj(query))  # (B, h, T, hd)
        k = self.split_heads(self.k_proj(key))  # (B, h, S, hd)
        v = self.split_heads(self.v_proj(value))  # (B, h, S, hd)
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
