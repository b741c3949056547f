"""Sentence decoder of PCM-Net: post-LN Transformer + cached beam search.

Modified from the official PCM-Net code (docs/method.md §3.7-3.8): the
``TokenBaseEmbedding`` + ``TransformerDecoder`` + ``BasePredictor`` stack and
its meshed-memory-style beam search. Where we follow it:

* beam size 3 and at most 20 decoding steps by default;
* scores are summed log-probabilities: no length penalty and no repetition
  constraint;
* a beam that emits EOS (id 0) is frozen: its score is kept and its only
  continuation is EOS at zero cost, so it stays in the beam and competes
  with the live hypotheses until the end;
* EOS doubles as BOS (both default to id 0); the embedding has no scaling,
  no activation and no token type.

Written from the spec in plain PyTorch; no code was copied. Attention and
FFN come from :mod:`.layers` (shared with the encoder; masked keys get
-10000 as in the official code), the K/V cache and the search are here.
"""
import math
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from pcm_plugin.registry import MODELS

from .layers import FeedForward, MultiHeadAttention


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """Fixed sine/cosine position table (Vaswani et al., base 10000).

    Args:
        num_positions (int): Number of rows (positions).
        dim (int): Even embedding width.

    Returns:
        Tensor: ``(num_positions, dim)``; even columns sin, odd columns cos.
    """
    pos = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) *
                     (-math.log(10000.0) / dim))  # (dim / 2,)
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


@dataclass
class DecoderCache:
    """Key/value cache for incremental decoding of ``R`` sequences.

    ``R`` rows: B, or B * W in a beam search of width W.

    Attributes:
        self_kv (list[tuple[Tensor, Tensor]]): Per layer, the self-attention
            keys and values of all past steps, each ``(R, H, t, d_head)``.
        cross_kv (list[tuple[Tensor, Tensor]]): Per layer, the
            cross-attention keys and values of the memory, each
            ``(R, H, L, d_head)``; computed once per ``generate`` call.
        memory_mask (Tensor): ``(R, L)`` bool, True = visible.
    """
    self_kv: List[Tuple[Tensor, Tensor]]
    cross_kv: List[Tuple[Tensor, Tensor]]
    memory_mask: Tensor

    @property
    def length(self) -> int:
        """Number of tokens already decoded (= position of the next one)."""
        return self.self_kv[0][0].size(2)


def project_kv(attn: MultiHeadAttention, x: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values of ``x`` (B, S, d), each (B, H, S, Dh), to cache."""
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
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """Run the layer on new tokens ``x`` (B, T, d).

        Args:
            x (Tensor): ``(B, T, d)`` new tokens.
            self_mask (Tensor, optional): bool, True = visible, broadcast
                to ``(B, H, T, t + T)``; None = see every key.
            cross_kv (tuple[Tensor, Tensor]): Memory keys/values.
            memory_mask (Tensor): ``(B, L)`` bool, True = visible.
            past_kv (tuple[Tensor, Tensor], optional): Cached self-attention
                keys/values of the t previous tokens.

        Returns:
            tuple: Output ``(B, T, d)`` and the self-attention keys/values
            of past + new tokens, each ``(B, H, t + T, Dh)``, to cache.
        """
        sa = self.self_attn
        query = sa.split_heads(sa.q_proj(x))  # (B, H, T, Dh)
        key, value = project_kv(sa, x)  # (B, H, T, Dh) each
        if past_kv is not None:
            key = torch.cat([past_kv[0], key], dim=2)  # (B, H, t + T, Dh)
            value = torch.cat([past_kv[1], value], dim=2)  # (B, H, t+T, Dh)
        x = self.norm_self(
            x + self.drop(sa.attend(query, key, value, self_mask)))
        ca = self.cross_attn
        query = ca.split_heads(ca.q_proj(x))  # (B, H, T, Dh)
        x = self.norm_cross(
            x + self.drop(ca.attend(query, *cross_kv, memory_mask)))
        x = self.norm_ffn(x + self.ffn(x))
        return x, (key, value)


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
            x, _ = layer(x, visible, cross_kv, memory_mask)
        return self.predictor(x)

    # -------------------------------------------------- incremental decoding
    def init_cache(self, memory: Tensor, memory_mask: Tensor) -> DecoderCache:
        """Empty self-attention cache + memory K/V (computed once)."""
        self.check_memory(memory, memory_mask)
        batch = memory.size(0)
        layer = self.layers[0].self_attn
        empty = memory.new_zeros(batch, layer.num_heads, 0, layer.head_dim)
        return DecoderCache(
            self_kv=[(empty, empty) for _ in self.layers],
            cross_kv=[
                project_kv(layer.cross_attn, memory) for layer in self.layers
            ],
            memory_mask=memory_mask)

    def step(self, input_ids: Tensor,
             cache: DecoderCache) -> Tuple[Tensor, DecoderCache]:
        """Decode one token per sequence, reusing the cache.

        Args:
            input_ids (Tensor): ``(N,)`` long, the latest token of each
                sequence (``bos_id`` at the first step).
            cache (DecoderCache): From :meth:`init_cache` or a previous step.

        Returns:
            tuple[Tensor, DecoderCache]: ``(N, V)`` logits of the next word
            and a new cache one step longer (the input cache is unchanged).
        """
        x = self.embed(input_ids[:, None], start=cache.length)  # (N, 1, d)
        # The new query may see every cached key: no causal mask is needed.
        self_kv = []
        for layer, past_kv, cross_kv in zip(self.layers, cache.self_kv,
                                            cache.cross_kv):
            x, kv = layer(x, None, cross_kv, cache.memory_mask, past_kv)
            self_kv.append(kv)
        logits = self.predictor(x[:, 0])  # (N, V)
        return logits, replace(cache, self_kv=self_kv)

    @staticmethod
    def reorder_cache(cache: DecoderCache, index: Tensor, *,
                      include_memory: bool = True) -> DecoderCache:
        """Select / repeat cached sequences: row i of the result = index[i].

        Args:
            cache (DecoderCache): Cache of N sequences.
            index (Tensor): ``(N',)`` long row indices into the cache.
            include_memory (bool): Also gather the memory K/V and mask.
                Beam search passes False when every row keeps the memory of
                its own sample (beams are reordered within a sample), which
                saves copying (N, H, L, Dh) tensors at every step.
                Defaults to True.

        Returns:
            DecoderCache: The reordered cache with N' rows.
        """

        def pick(pair: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
            return pair[0].index_select(0, index), pair[1].index_select(
                0, index)

        new = replace(cache, self_kv=[pick(kv) for kv in cache.self_kv])
        if include_memory:
            new = replace(
                new,
                cross_kv=[pick(kv) for kv in cache.cross_kv],
                memory_mask=cache.memory_mask.index_select(0, index))
        return new

    # ------------------------------------------------------------ search
    @torch.no_grad()
    def generate(self, memory: Tensor, memory_mask: Tensor, *,
                 beam_size: Optional[int] = None,
                 max_len: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Batched beam search with KV cache (beam_size 1 = greedy).

        Call in eval mode for deterministic output.

        Args:
            memory (Tensor): ``(B, L, d)`` encoder output.
            memory_mask (Tensor): ``(B, L)`` bool, True = visible.
            beam_size (int, optional): Defaults to ``self.beam_size``.
            max_len (int, optional): Decoding steps T. Defaults to
                ``self.max_len``.

        Returns:
            tuple[Tensor, Tensor]: ``ids`` (B, T) long, without BOS, with
            the EOS token if emitted and ``eos_id`` after it; ``scores``
            (B,) summed log-probabilities of the returned ids (EOS
            included, padding not counted).
        """
        beam = self.beam_size if beam_size is None else beam_size
        steps = self.max_len if max_len is None else max_len
        if beam < 1 or steps < 1:
            raise ValueError('CaptionTransformerDecoder.generate: beam_size '
                             f'({beam}) and max_len ({steps}) must be >= 1.')
        batch, vocab = memory.size(0), self.vocab_size
        device = memory.device
        cache = self.init_cache(memory, memory_mask)
        sample = torch.arange(batch, device=device)
        cache = self.reorder_cache(
            cache, sample.repeat_interleave(beam))  # (B * W) rows
        # All beams of a sample start identical: only beam 0 may expand.
        scores = torch.full((batch, beam), -math.inf,
                            device=device)  # (B, W), float32
        scores[:, 0] = 0.0
        finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
        ids = torch.full((batch, beam, steps), self.eos_id,
                         dtype=torch.long, device=device)  # (B, W, T)
        tokens = torch.full((batch * beam, ), self.bos_id, dtype=torch.long,
                            device=device)  # (B * W,)
        for t in range(steps):
            logits, cache = self.step(tokens, cache)  # (B * W, V)
            log_probs = logits.float().log_softmax(dim=-1)
            log_probs = log_probs.view(batch, beam, vocab)  # (B, W, V)
            log_probs = self.freeze_finished(log_probs, finished)
            candidates = scores[..., None] + log_probs  # (B, W, V)
            scores, flat = candidates.view(batch, beam * vocab).topk(
                beam, dim=-1)  # (B, W)
            parent, word = flat // vocab, flat % vocab  # (B, W) each
            ids = ids.gather(1, parent[..., None].expand(-1, -1, steps))
            ids[:, :, t] = word
            finished = finished.gather(1, parent) | (word == self.eos_id)
            if bool(finished.all()):
                break
            rows = (parent + sample[:, None] * beam).view(-1)  # (B * W,)
            cache = self.reorder_cache(cache, rows, include_memory=False)
            tokens = word.view(-1)  # (B * W,)
        best = scores.argmax(dim=-1)  # (B,)
        return ids[sample, best], scores[sample, best]

    def freeze_finished(self, log_probs: Tensor, finished: Tensor) -> Tensor:
        """Finished beams may only repeat EOS, at zero cost (score kept).

        Args:
            log_probs (Tensor): ``(B, W, V)`` next-word log-probabilities.
            finished (Tensor): ``(B, W)`` bool, beam already emitted EOS.

        Returns:
            Tensor: ``(B, W, V)`` with finished rows = 0 at EOS, -inf else.
        """
        frozen = torch.full_like(log_probs[0, 0], -math.inf)  # (V,)
        frozen[self.eos_id] = 0.0
        return torch.where(finished[..., None], frozen, log_probs)
