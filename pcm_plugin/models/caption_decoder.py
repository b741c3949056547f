"""Sentence decoder of PCM-Net: post-LN Transformer + cached beam search.

Our own plain-PyTorch code, written from the paper and from reading the
official PCM-Net code (docs/method.md §3.7-3.8); no code was copied. It
takes the place of the official ``TokenBaseEmbedding`` +
``TransformerDecoder`` + ``BasePredictor`` stack and its meshed-memory-style
beam search. Where it follows them:

* beam size 3 and at most 20 decoding steps by default;
* scores are summed log-probabilities: no length penalty and no repetition
  constraint;
* a beam that emits EOS (id 0) is frozen: its score is kept and its only
  continuation is EOS at zero cost, so it stays in the beam and competes
  with the live hypotheses until the end;
* EOS doubles as BOS (both default to id 0); the embedding has no scaling,
  no activation and no token type.

Attention and FFN come from :mod:`.layers` (shared with the encoder;
masked keys get -10000 as in the official code), the layer from
:mod:`.decoder_layer`, the K/V cache from :mod:`.decoder_cache` and the
search from :mod:`.beam_search`, which returns what decoding every beam at
every step would, doing less.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from pcm_plugin.registry import MODELS

from .beam_search import beam_search
from .decoder_cache import (
    DecoderCache,
    drop_masked_positions,
    reorder_cache,
    stored_kv,
)
from .decoder_layer import DecoderLayer, project_kv


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """Fixed sine/cosine position table (Vaswani et al., base 10000).

    Args:
        num_positions (int): Number of rows (positions).
        dim (int): Even embedding width.

    Returns:
        Tensor: ``(num_positions, dim)``; even columns sin, odd columns cos.
    """
    pos = torch.arange(num_positions,
                       dtype=torch.float32)[:, None]  # (num_positions, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) *
                     (-math.log(10000.0) / dim))  # (dim / 2,)
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


@MODELS.register_module()
class CaptionTransformerDecoder(BaseModule):
    """Word embedding + post-LN Transformer decoder + predictor (§3.7-3.8).

    Args:
        vocab_size (int): Number of words V, special tokens included.
        embed_dim (int): Model width d. Defaults to 512.
        num_layers (int): Decoder layers. Defaults to 3.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): FFN hidden width. Defaults to 2048.
        attn_drop (float): Dropout on attention probabilities.
            Defaults to 0.3.
        hidden_drop (float): Dropout after the attention output
            projections, the FFN activation and the FFN output.
            Defaults to 0.2.
        word_drop (float): Dropout after the word embedding LayerNorm.
            Defaults to 0.1.
        predictor_drop (float): Dropout before the output Linear.
            Defaults to 0.5.
        layer_norm_eps (float): Epsilon of the layers' (BERT-style)
            LayerNorms. Defaults to 1e-12, as the official code.
        embed_norm_eps (float): Epsilon of the word-embedding LayerNorm.
            Defaults to 1e-5: the official code leaves that norm at
            PyTorch's default (docs/method.md §9).
        max_len (int): Default number of decoding steps. Defaults to 20.
        beam_size (int): Default beam size (1 = greedy). Defaults to 3.
        bos_id (int): First input token of every caption. Defaults to 0.
        eos_id (int): End-of-sentence token. Defaults to 0.
        max_positions (int): Rows of the sinusoid table. Defaults to 5000.
        attn_impl (str): Attention kernel, ``'eager'`` (reference) or
            ``'sdpa'`` (fused; for GPUs), see
            :class:`~pcm_plugin.models.layers.MultiHeadAttention`.
            Defaults to 'eager'.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self, *, vocab_size: int, embed_dim: int = 512,
                 num_layers: int = 3, num_heads: int = 8,
                 ffn_dim: int = 2048, attn_drop: float = 0.3,
                 hidden_drop: float = 0.2, word_drop: float = 0.1,
                 predictor_drop: float = 0.5, layer_norm_eps: float = 1e-12,
                 embed_norm_eps: float = 1e-5,
                 max_len: int = 20, beam_size: int = 3, bos_id: int = 0,
                 eos_id: int = 0, max_positions: int = 5000,
                 attn_impl: str = 'eager',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if embed_dim % num_heads or embed_dim % 2:
            raise ValueError(
                f'CaptionTransformerDecoder: embed_dim={embed_dim} must be '
                f'even and divisible by num_heads={num_heads}.')
        if vocab_size < 1:
            raise ValueError('CaptionTransformerDecoder: vocab_size must be '
                             f'>= 1, got {vocab_size}.')
        for name, value in (('bos_id', bos_id), ('eos_id', eos_id)):
            if not 0 <= value < vocab_size:
                raise ValueError(
                    f'CaptionTransformerDecoder: {name}={value} must be in '
                    f'[0, vocab_size={vocab_size}).')
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.max_len = max_len
        self.beam_size = beam_size
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.word_embed = nn.Embedding(vocab_size, embed_dim)
        self.register_buffer(
            'position_table', sinusoid_table(max_positions, embed_dim),
            persistent=False)
        self.embed_norm = nn.LayerNorm(embed_dim, eps=embed_norm_eps)
        self.embed_drop = nn.Dropout(word_drop)
        self.layers = nn.ModuleList(
            DecoderLayer(
                embed_dim=embed_dim, num_heads=num_heads, ffn_dim=ffn_dim,
                attn_drop=attn_drop, hidden_drop=hidden_drop,
                layer_norm_eps=layer_norm_eps, attn_impl=attn_impl)
            for _ in range(num_layers))
        self.predictor = nn.Sequential(
            nn.Dropout(predictor_drop), nn.Linear(embed_dim, vocab_size))

    # ------------------------------------------------------------ building
    def embed(self, input_ids: Tensor, start: int = 0) -> Tensor:
        """Embed words (B, T) at positions ``start..start+T-1`` -> (B,T,d)."""
        end = start + input_ids.size(1)
        if end > self.position_table.size(0):
            raise ValueError(
                f'CaptionTransformerDecoder: position {end - 1} exceeds the '
                f'sinusoid table ({self.position_table.size(0)} rows); '
                'raise max_positions.')
        x = self.word_embed(input_ids) + self.position_table[start:end]
        return self.embed_drop(self.embed_norm(x))

    def check_memory(self, memory: Tensor, memory_mask: Tensor) -> None:
        """Raise a clear error on a malformed memory / memory mask."""
        if memory.dim() != 3 or memory.size(-1) != self.embed_dim:
            raise ValueError(
                'CaptionTransformerDecoder: memory must be (B, L, '
                f'{self.embed_dim}), got {tuple(memory.shape)}.')
        if (memory_mask.dtype != torch.bool
                or memory_mask.shape != memory.shape[:2]):
            raise ValueError(
                'CaptionTransformerDecoder: memory_mask must be a bool '
                f'(B, L) = {tuple(memory.shape[:2])} tensor with True = '
                f'visible, got {memory_mask.dtype} '
                f'{tuple(memory_mask.shape)}.')

    def forward(self, input_ids: Tensor, memory: Tensor, memory_mask: Tensor,
                input_mask: Optional[Tensor] = None) -> Tensor:
        """Teacher-forced logits.

        Args:
            input_ids (Tensor): ``(B, T)`` long, ``[bos, w_1, ...]``.
            memory (Tensor): ``(B, L, d)`` encoder output.
            memory_mask (Tensor): ``(B, L)`` bool, True = visible.
            input_mask (Tensor, optional): ``(B, T)`` bool, True = real
                token; padded keys are hidden. Defaults to None (all real).

        Returns:
            Tensor: ``(B, T, V)`` logits; position t predicts word t + 1.
        """
        self.check_memory(memory, memory_mask)
        if input_ids.dim() != 2 or input_ids.size(0) != memory.size(0):
            raise ValueError(
                'CaptionTransformerDecoder: input_ids must be (B, T) with '
                f'B = {memory.size(0)}, got {tuple(input_ids.shape)}.')
        length = input_ids.size(1)
        visible = torch.ones(
            length, length, dtype=torch.bool,
            device=input_ids.device).tril()[None]  # (1, T, T)
        if input_mask is not None:
            visible = visible & input_mask[:, None, :].bool()  # (B, T, T)
        visible = visible[:, None]  # (B or 1, 1, T, T)
        x = self.embed(input_ids)
        for layer in self.layers:
            cross_kv = project_kv(layer.cross_attn, memory)
            x = layer(x, visible, cross_kv, memory_mask)
        return self.predictor(x)

    # -------------------------------------------------- incremental decoding
    def init_cache(self, memory: Tensor, memory_mask: Tensor, *,
                   width: int = 1,
                   max_len: Optional[int] = None) -> DecoderCache:
        """Empty cache with one row per memory row, in slot 0 of its group.

        The memory's masked positions are dropped (exactly equivalent, see
        :func:`drop_masked_positions`) and its keys/values computed once.

        Args:
            memory (Tensor): ``(B, L, d)`` encoder output.
            memory_mask (Tensor): ``(B, L)`` bool, True = visible.
            width (int): Query slots per memory row (beams per sample).
                Defaults to 1.
            max_len (int, optional): Steps to preallocate; the cache grows
                past them if needed. Defaults to ``self.max_len``.

        Returns:
            DecoderCache: B rows, ``length`` 0.
        """
        self.check_memory(memory, memory_mask)
        memory, memory_mask = drop_masked_positions(memory, memory_mask)
        cross_kv = [stored_kv(*project_kv(layer.cross_attn, memory))
                    for layer in self.layers]
        batch = memory.size(0)
        attn = self.layers[0].self_attn
        # The cross keys' dtype is the steps' one (autocast included).
        shape = (max_len or self.max_len, batch, attn.num_heads,
                 attn.head_dim)
        self_kv = [(cross_kv[0][0].new_empty(shape),
                    cross_kv[0][0].new_empty(shape)) for _ in self.layers]
        slots = None if width == 1 else torch.arange(
            batch, device=memory.device) * width  # (B,)
        return DecoderCache(
            self_kv=self_kv, cross_kv=cross_kv, memory_mask=memory_mask,
            slots=slots, width=width,
            spare_kv=[[None, None] for _ in self.layers])

    def step(self, input_ids: Tensor, cache: DecoderCache) -> Tensor:
        """Decode one token per row, extending ``cache`` in place.

        Args:
            input_ids (Tensor): ``(R,)`` long, the latest token of each
                row (``bos_id`` at the first step).
            cache (DecoderCache): From :meth:`init_cache` or a previous
                step; its ``length`` grows by one.

        Returns:
            Tensor: ``(R, V)`` logits of the next word.
        """
        start = cache.length
        if start == cache.self_kv[0][0].size(0):
            cache.self_kv = [tuple(torch.cat([p, torch.empty_like(p)])
                                   for p in kv)
                             for kv in cache.self_kv]  # (2 T_max, R, H, Dh)
            cache.spare_kv = [[None, None] for _ in cache.self_kv]
        x = self.embed(input_ids[:, None], start=start)  # (R, 1, d)
        # Always a tensor here: one graph fewer per compiled layer
        # (``compile_layers``), for three cheap ops.
        slots = cache.slots if cache.slots is not None else torch.arange(
            x.size(0), device=x.device)  # (R,)
        # The new query may see every cached key: no causal mask is needed.
        for layer, (keys, values), cross_kv in zip(
                self.layers, cache.self_kv, cache.cross_kv):
            x = layer(x, None, cross_kv, cache.memory_mask,
                      (keys[:start + 1], values[:start + 1]), slots,
                      cache.width)
        cache.length += 1
        return self.predictor(x[:, 0])  # (R, V)

    @staticmethod
    def reorder_cache(cache: DecoderCache, rows: Tensor, *,
                      slots: Optional[Tensor] = None,
                      memories: Optional[Tensor] = None) -> None:
        """Select / repeat cached rows in place, see
        :func:`~pcm_plugin.models.decoder_cache.reorder_cache`."""
        reorder_cache(cache, rows, slots=slots, memories=memories)

    # ------------------------------------------------------------ search
    def generate(self, memory: Tensor, memory_mask: Tensor, *,
                 beam_size: Optional[int] = None,
                 max_len: Optional[int] = None,
                 all_beams: bool = False) -> Tuple[Tensor, Tensor]:
        """Batched beam search with KV cache (beam_size 1 = greedy), see
        :func:`~pcm_plugin.models.beam_search.beam_search`.

        Args:
            memory (Tensor): ``(B, L, d)`` encoder output.
            memory_mask (Tensor): ``(B, L)`` bool, True = visible.
            beam_size (int, optional): Defaults to ``self.beam_size``.
            max_len (int, optional): Decoding steps T. Defaults to
                ``self.max_len``.
            all_beams (bool): Return the W final beams, best first,
                instead of the best (a re-ranker's candidates). Defaults
                to False.

        Returns:
            tuple[Tensor, Tensor]: ``ids`` (B, T) long, without BOS, with
            the EOS token if emitted and ``eos_id`` after it; ``scores``
            (B,) summed log-probabilities of the returned ids. With
            ``all_beams``: ``ids`` (B, W, T), ``scores`` (B, W).
        """
        beam = self.beam_size if beam_size is None else beam_size
        steps = self.max_len if max_len is None else max_len
        if beam < 1 or steps < 1:
            raise ValueError('CaptionTransformerDecoder.generate: beam_size '
                             f'({beam}) and max_len ({steps}) must be >= 1.')
        return beam_search(self, memory, memory_mask, beam=beam, steps=steps,
                           all_beams=all_beams)
