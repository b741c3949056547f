"""Mapping network of a prefix captioner: visual tokens -> LM prefix.

ClipCap's transformer mapper (Mokady et al., 2021), which ViECap keeps:
P learned query vectors are put before the visual tokens, a small
transformer runs over the whole sequence, and the P query positions,
projected to the language model's width, become the first P input
embeddings of the language model (the "soft prompt"). Here the visual
tokens are a whole token sequence (``PCMMixup``'s ``[g, v_1 .. v_N]``, or
``VisualSemanticEncoder``'s memory) with a visibility mask, rather than one
CLIP vector, so the mix-up's textual tokens reach the language model
through the queries' attention.

Written from the paper's description in plain PyTorch; the layers are the
encoder's own post-LN layers (:class:`~.vs_encoder.EncoderLayer`).
"""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from pcm_plugin.registry import MODELS

from .vs_encoder import EncoderLayer


@MODELS.register_module()
class PrefixMapper(BaseModule):
    """Learned queries + transformer over the visual tokens -> LM prefix.

    Args:
        embed_dim (int): Width d of the visual tokens (the mix-up's
            ``embed_dim``); the mapper runs at this width. Defaults to 512.
        out_dim (int): The language model's embedding width (GPT-2: 768).
        prefix_len (int): P, the number of prefix embeddings. Defaults to
            10 (ClipCap and ViECap).
        num_layers (int): Transformer layers. Defaults to 8 (ClipCap's
            transformer mapper).
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): FFN hidden width. Defaults to 2048.
        attn_drop (float): Dropout on attention probabilities.
            Defaults to 0.1.
        hidden_drop (float): Dropout after the attention output and in the
            FFN. Defaults to 0.1.
        layer_norm_eps (float): LayerNorm epsilon. Defaults to 1e-5.
        attn_impl (str): ``'eager'`` or ``'sdpa'``, see
            :class:`~pcm_plugin.models.layers.MultiHeadAttention`.
            Defaults to 'eager'.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, *, out_dim: int, embed_dim: int = 512,
                 prefix_len: int = 10, num_layers: int = 8,
                 num_heads: int = 8, ffn_dim: int = 2048,
                 attn_drop: float = 0.1, hidden_drop: float = 0.1,
                 layer_norm_eps: float = 1e-5, attn_impl: str = 'eager',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if prefix_len < 1:
            raise ValueError(f'PrefixMapper: prefix_len must be >= 1, got '
                             f'{prefix_len}')
        self.embed_dim, self.out_dim = embed_dim, out_dim
        self.prefix_len = prefix_len
        self.queries = nn.Parameter(torch.randn(1, prefix_len, embed_dim))
        self.layers = nn.ModuleList(
            EncoderLayer(embed_dim=embed_dim, num_heads=num_heads,
                         ffn_dim=ffn_dim, attn_drop=attn_drop,
                         hidden_drop=hidden_drop, ffn_drop=hidden_drop,
                         layer_norm_eps=layer_norm_eps, attn_impl=attn_impl)
            for _ in range(num_layers))
        self.out_proj = nn.Linear(embed_dim, out_dim)

    def forward(self, tokens: Tensor,
                token_mask: Optional[Tensor] = None) -> Tensor:
        """Map a visual token sequence to P prefix embeddings.

        Args:
            tokens (Tensor): ``(B, L, d)`` visual tokens.
            token_mask (Tensor, optional): ``(B, L)`` bool, True = visible.
                Defaults to None (all visible).

        Returns:
            Tensor: ``(B, P, out_dim)``; every position is visible.
        """
        if tokens.dim() != 3 or tokens.size(-1) != self.embed_dim:
            raise ValueError(
                f'PrefixMapper: tokens must be (B, L, {self.embed_dim}), '
                f'got {tuple(tokens.shape)}; set model.mapper.embed_dim to '
                "the mix-up's embed_dim")
        batch = tokens.size(0)
        if token_mask is None:
            token_mask = tokens.new_ones(tokens.shape[:2], dtype=torch.bool)
        queries = self.queries.expand(batch, -1, -1)  # (B, P, d)
        h = torch.cat([queries, tokens], dim=1)  # (B, P + L, d)
        mask = torch.cat([token_mask.new_ones(batch, self.prefix_len),
                          token_mask], dim=1)  # (B, P + L)
        for layer in self.layers:
            h = layer(h, mask)
        return self.out_proj(h[:, :self.prefix_len])  # (B, P, out_dim)
