"""Visual-semantic encoder (``GTransformerEncoder``), docs/method.md §3.6.

A BERT-style post-LN transformer over the mixed token sequence. Its global
token is re-aggregated from every stage (paper Eq. 6): the position-0 vectors
after the input embedding and after each layer are concatenated and mapped
back to one token by Linear + LayerNorm, so the caption decoder sees a global
summary of shallow and deep features.
"""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import nn

from pcm_plugin.registry import MODELS

from .layers import FeedForward, MultiHeadAttention


class EncoderLayer(nn.Module):
    """Post-LN layer: ``h = LN(h + attn(h))``, ``h = LN(h + ffn(h))``."""

    def __init__(self, *, embed_dim: int, num_heads: int, ffn_dim: int,
                 attn_drop: float, hidden_drop: float, ffn_drop: float,
                 layer_norm_eps: float, attn_impl: str):
        super().__init__()
        self.attn = MultiHeadAttention(embed_dim=embed_dim,
                                       num_heads=num_heads,
                                       attn_drop=attn_drop,
                                       attn_impl=attn_impl)
        self.attn_drop = nn.Dropout(hidden_drop)
        self.attn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.ffn = FeedForward(embed_dim=embed_dim, ffn_dim=ffn_dim,
                               act_drop=ffn_drop, out_drop=ffn_drop)
        self.ffn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(h + self.attn_drop(self.attn(h, h, h, key_mask)))
        return self.ffn_norm(h + self.ffn(h))


@MODELS.register_module()
class VisualSemanticEncoder(BaseModule):
    """Post-LN transformer encoder with inter-layer global aggregation.

    Args:
        embed_dim (int): Width d. Defaults to 512.
        num_layers (int): Layers N_e. Defaults to 3.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): FFN hidden width. Defaults to 2048.
        attn_drop (float): Dropout on attention probabilities. Defaults to 0.3.
        hidden_drop (float): Dropout after the attention output. Defaults
            to 0.2.
        ffn_drop (float): Dropout after the FFN activation and output.
            Defaults to 0.2 (0.25 in the official COCO ViT-L/14 config).
        layer_norm_eps (float): Epsilon of the layers' (BERT-style)
            LayerNorms. Defaults to 1e-12, as the official code.
        global_norm_eps (float): Epsilon of the LayerNorm after the global
            aggregation. Defaults to 1e-5: the official code leaves that
            norm at PyTorch's default (docs/method.md §9).
        aggregate_global (bool): Re-aggregate the global token from all
            stages (Eq. 6). Defaults to True.
        attn_impl (str): Attention kernel, ``'eager'`` (reference) or
            ``'sdpa'`` (fused; for GPUs), see
            :class:`~pcm_plugin.models.layers.MultiHeadAttention`.
            Defaults to 'eager'.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, *, embed_dim: int = 512, num_layers: int = 3,
                 num_heads: int = 8, ffn_dim: int = 2048,
                 attn_drop: float = 0.3, hidden_drop: float = 0.2,
                 ffn_drop: float = 0.2, layer_norm_eps: float = 1e-12,
                 global_norm_eps: float = 1e-5,
                 aggregate_global: bool = True,
                 attn_impl: str = 'eager',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.layers = nn.ModuleList(
            EncoderLayer(embed_dim=embed_dim, num_heads=num_heads,
                         ffn_dim=ffn_dim, attn_drop=attn_drop,
                         hidden_drop=hidden_drop, ffn_drop=ffn_drop,
                         layer_norm_eps=layer_norm_eps, attn_impl=attn_impl)
            for _ in range(num_layers))
        self.aggregate_global = aggregate_global
        if aggregate_global:
            self.global_fuse = nn.Linear((num_layers + 1) * embed_dim,
                                         embed_dim)
            self.global_norm = nn.LayerNorm(embed_dim, eps=global_norm_eps)

    def forward(self, tokens: torch.Tensor,
                token_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode a token sequence whose position 0 is the global token.

        Args:
            tokens (Tensor): (B, L, d) embedded tokens.
            token_mask (Tensor, optional): (B, L) bool, True = visible.

        Returns:
            Tensor: (B, L, d) memory for the decoder.
        """
        if token_mask is None:
            token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool,
                                    device=tokens.device)
        h = tokens
        global_states = [h[:, 0]]  # each (B, d)
        for layer in self.layers:
            h = layer(h, token_mask)
            global_states.append(h[:, 0])
        if self.aggregate_global:
            stages = torch.cat(global_states, dim=-1)  # (B, (layers+1)*d)
            fused = self.global_fuse(stages)  # (B, d)
            h = torch.cat([self.global_norm(fused)[:, None], h[:, 1:]], dim=1)
        return h
