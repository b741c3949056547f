"""Transformer building blocks shared by the encoder and the decoder."""
from typing import Optional

import torch
from torch import nn

# The official (X-modaler) code adds -10000 to masked attention logits rather
# than -inf, so a row with every key masked stays finite.
MASK_VALUE = -10000.0


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a boolean key mask.

    Args:
        embed_dim (int): Width d.
        num_heads (int): Heads; d must divide evenly.
        attn_drop (float): Dropout on the attention probabilities.
    """

    def __init__(self, *, embed_dim: int, num_heads: int,
                 attn_drop: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by '
                             f'num_heads {num_heads}')
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
        scores = q @ k.transpose(-2, -1) / self.head_dim ** 0.5  # (B, h, T, S)
        if mask is not None:
            if mask.dim() == 2:
                mask = mask[:, None, None, :]  # (B, 1, 1, S)
            scores = scores.masked_fill(~mask, MASK_VALUE)
        probs = self.attn_drop(scores.softmax(dim=-1))  # (B, h, T, S)
        out = probs @ v  # (B, h, T, hd)
        B, _, T, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T, -1)  # (B, T, d)
        return self.out_proj(out)

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
