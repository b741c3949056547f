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

The search returns what decoding every beam at every step would, doing
less (docs/benchmarks.md §2): only the hypotheses that can still change
are decoded (one beam per sample at the first step; finished beams and
finished samples leave the batch), the masked memory positions are
dropped, the memory keys/values are computed once per sample and the
beams of a sample query them together, and the self-attention cache is
preallocated and written in place.
"""
import math
from dataclasses import dataclass, field
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
    """State of incremental decoding: R rows (hypotheses) over S memories.

    The rows' cross-attention queries are laid out in a grid of ``width``
    slots per memory row (the beams of a sample): the queries of one
    memory row attend to its keys together, which are stored once, not
    once per beam. A row that has nothing left to decode (a finished beam)
    leaves the rows and its slot stays empty.

    Attributes:
        self_kv (list[tuple[Tensor, Tensor]]): Per layer, preallocated
            self-attention keys and values, each ``(T_max, R, H, Dh)``,
            step-major (the past of all rows up to step t is the contiguous
            block ``[:t]``); steps from ``length`` on are unused.
        cross_kv (list[tuple[Tensor, Tensor]]): Per layer, the
            cross-attention keys and values of the memory, each
            ``(S, H, L, Dh)``; computed once per ``generate`` call.
        memory_mask (Tensor): ``(S, L)`` bool, True = visible.
        slots (Tensor, optional): ``(R,)`` long: row r is query slot
            ``slots[r]`` of the ``(S, width)`` grid, i.e. it reads memory
            row ``slots[r] // width``. None: every slot is a row, in order
            (R = S * width).
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
        slots: Optional[Tensor] = None,
        width: int = 1,
    ) -> Tensor:
        """Run the layer on new tokens ``x`` (R, T, d).

        Teacher forcing passes the defaults of the last three arguments
        (row r reads memory row r); a cached decoding step passes all.

        Args:
            x (Tensor): ``(R, T, d)`` new tokens.
            self_mask (Tensor, optional): bool, True = visible, broadcast
                to ``(R, H, T, t + T)``; None = see every key.
            cross_kv (tuple[Tensor, Tensor]): Memory keys/values, each
                ``(S, H, L, Dh)``.
            memory_mask (Tensor): ``(S, L)`` bool, True = visible.
            past_kv (tuple[Tensor, Tensor], optional): One decoding step
                (T = 1): the cached self-attention keys and values of the
                rows, each ``(t + 1, R, H, Dh)``, whose last step this
                token's are written into (in place). None: the keys are
                those of ``x``.
            slots (Tensor, optional): ``(R,)`` query slots in the
                ``(S, width)`` grid, see :class:`DecoderCache`.
            width (int): Query slots per memory row. Defaults to 1.

        Returns:
            Tensor: ``(R, T, d)``.
        """
        sa = self.self_attn
        query = sa.split_heads(sa.q_proj(x))  # (R, H, T, Dh)
        key, value = project_kv(sa, x)  # (R, H, T, Dh) each
        if past_kv is not None:
            # Written in place: no concatenation of the past each step.
            past_kv[0][-1] = key[:, :, 0]  # (R, H, Dh)
            past_kv[1][-1] = value[:, :, 0]  # (R, H, Dh)
            key, value = (p.permute(1, 2, 0, 3)
                          for p in past_kv)  # (R, H, t + 1, Dh) views
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
        ``(width * T)``-row matrix against its keys, instead of ``width``
        one-row products each reading a copy of the same keys: the step's
        attention is then a fraction of its time (at the COCO size, one
        query per row made it the second cost after the Linear layers).

        Args:
            x (Tensor): ``(R, T, d)`` queries' input.
            cross_kv (tuple[Tensor, Tensor]): Each ``(S, H, L, Dh)``.
            memory_mask (Tensor): ``(S, L)`` bool.
            slots (Tensor, optional): ``(R,)`` grid slots; empty slots get
                a zero query whose output is dropped.
            width (int): Slots per memory row.

        Returns:
            Tensor: ``(R, T, d)``, output projection included.
        """
        ca = self.cross_attn
        _, length, dim = x.shape
        query = ca.q_proj(x)  # (R, T, d)
        if slots is not None:
            grid = query.new_zeros(memory_mask.size(0) * width, length, dim)
            query = grid.index_copy_(0, slots, query)  # (S * W, T, d)
        query = query.view(-1, width * length, dim)  # (S, W * T, d)
        out = ca.attend(ca.split_heads(query), *cross_kv,
                        memory_mask)  # (S, W * T, d)
        out = out.view(-1, length, dim)  # (S * W, T, d)
        return out if slots is None else out.index_select(
            0, slots)  # (R, T, d)


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
            memory (Tensor): ``(S, L, d)`` encoder output.
            memory_mask (Tensor): ``(S, L)`` bool, True = visible.
            width (int): Query slots per memory row (beams per sample).
                Defaults to 1.
            max_len (int, optional): Steps to preallocate; the cache grows
                past them if needed. Defaults to ``self.max_len``.

        Returns:
            DecoderCache: S rows, ``length`` 0.
        """
        self.check_memory(memory, memory_mask)
        memory, memory_mask = drop_masked_positions(memory, memory_mask)
        cross_kv = [self.stored_kv(*project_kv(layer.cross_attn, memory))
                    for layer in self.layers]
        batch = memory.size(0)
        attn = self.layers[0].self_attn
        # The cross keys' dtype is the steps' one (autocast included).
        shape = (max_len or self.max_len, batch, attn.num_heads,
                 attn.head_dim)
        self_kv = [(cross_kv[0][0].new_empty(shape),
                    cross_kv[0][0].new_empty(shape)) for _ in self.layers]
        slots = None if width == 1 else torch.arange(
            batch, device=memory.device) * width  # (S,)
        return DecoderCache(
            self_kv=self_kv, cross_kv=cross_kv, memory_mask=memory_mask,
            slots=slots, width=width,
            spare_kv=[[None, None] for _ in self.layers])

    @staticmethod
    def stored_kv(key: Tensor, value: Tensor) -> Tuple[Tensor, Tensor]:
        """Memory keys/values laid out for the steps' products, once.

        Args:
            key (Tensor): ``(S, H, L, Dh)`` (any strides).
            value (Tensor): ``(S, H, L, Dh)`` (any strides).

        Returns:
            tuple[Tensor, Tensor]: The same values: ``key`` a view of a
            contiguous ``(S, H, Dh, L)``, which ``q @ key.transpose(-2,
            -1)`` reads as is (measured: half the time of the other
            layout), and ``value`` contiguous; otherwise every step's
            matmul would copy them.
        """
        key = key.transpose(-2, -1).contiguous().transpose(-2, -1)
        return key, value.contiguous()

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
        """Select / repeat cached rows in place: new row i = old ``rows[i]``.

        Args:
            cache (DecoderCache): Cache of R rows over S memory rows.
            rows (Tensor): ``(R',)`` long row indices.
            slots (Tensor, optional): ``(R',)`` the new rows' query slots
                (numbered after ``memories``' selection); None: every slot
                is a row, in order. Defaults to None.
            memories (Tensor, optional): ``(S',)`` memory rows to keep (those
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
            # of :meth:`stored_kv`.
            cache.cross_kv = [
                (key.transpose(-2, -1).index_select(0, memories).transpose(
                    -2, -1), value.index_select(0, memories))
                for key, value in cache.cross_kv]  # (S', H, L, Dh) each
            cache.memory_mask = cache.memory_mask.index_select(0, memories)
        cache.slots = slots

    # ------------------------------------------------------------ search
    @torch.no_grad()
    def generate(self, memory: Tensor, memory_mask: Tensor, *,
                 beam_size: Optional[int] = None,
                 max_len: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Batched beam search with KV cache (beam_size 1 = greedy).

        Call in eval mode for deterministic output. Only hypotheses that
        can still change are decoded: at the first step one beam per
        sample (the W beams start identical), later the beams that have
        not emitted EOS (a finished beam's only continuation is EOS at no
        cost, which needs no decoder) and whose score is finite; a sample
        whose beams have all finished leaves the batch with its result.

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
        cache = self.init_cache(memory, memory_mask, width=beam,
                                max_len=steps)
        result_ids = torch.full((batch, steps), self.eos_id,
                                dtype=torch.long, device=device)  # (B, T)
        result_scores = torch.zeros(batch, device=device)  # (B,)
        # Search state of the S samples still decoded; `samples` holds
        # their indices in the batch.
        samples = torch.arange(batch, device=device)  # (S,)
        scores = torch.full((batch, beam), -math.inf,
                            device=device)  # (S, W), float32
        scores[:, 0] = 0.0
        finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
        ids = torch.full((batch, beam, steps), self.eos_id,
                         dtype=torch.long, device=device)  # (S, W, T)
        tokens = torch.full((batch, ), self.bos_id, dtype=torch.long,
                            device=device)  # (R,)
        for t in range(steps):
            log_probs = self.step(tokens, cache).float().log_softmax(
                dim=-1)  # (R, V)
            candidates = self.beam_candidates(
                log_probs, scores, finished, cache.slots)  # (S, W * V)
            scores, flat = candidates.topk(beam, dim=-1)  # (S, W)
            parent, word = flat // vocab, flat % vocab  # (S, W) each
            ids = ids.gather(1, parent[..., None].expand(-1, -1, steps))
            ids[:, :, t] = word
            finished = finished.gather(1, parent) | (word == self.eos_id)
            if t + 1 == steps:
                break
            # A beam needs the decoder while unfinished with a finite
            # score (-inf only where fewer than W candidates were finite).
            live = ~finished & (scores > -math.inf)  # (S, W)
            # Without one, a sample's finite beams are final and keep
            # their order (topk sorts): its result is known now.
            done = ~live.any(dim=1)  # (S,)
            kept = None
            if bool(done.any()):
                self.keep_best(result_ids, result_scores, samples[done],
                               ids[done], scores[done])
                if bool(done.all()):
                    return result_ids, result_scores
                kept = (~done).nonzero()[:, 0]  # (S',)
                samples, scores, finished, ids, parent, word, live = (
                    v.index_select(0, kept) for v in (
                        samples, scores, finished, ids, parent, word, live))
            live = live.view(-1)  # (S' * W,)
            slots = None if bool(live.all()) else live.nonzero()[:, 0]
            self.reorder_cache(
                cache, self.parent_rows(cache, parent, kept, slots),
                slots=slots, memories=kept)
            tokens = word.view(-1)  # (S' * W,)
            if slots is not None:
                tokens = tokens.index_select(0, slots)  # (R',)
        self.keep_best(result_ids, result_scores, samples, ids, scores)
        return result_ids, result_scores

    def beam_candidates(self, log_probs: Tensor, scores: Tensor,
                        finished: Tensor,
                        slots: Optional[Tensor]) -> Tensor:
        """Score of every one-word extension of every beam.

        Laid out as the full ``(S, W * V)`` matrix whatever the rows, so
        that ``topk`` sees the same values in the same places (its
        tie-breaking included) as when every beam is decoded: a finished
        beam may only repeat EOS, at zero cost (its score kept); a beam
        with no row has score -inf, and so has each of its extensions.

        Args:
            log_probs (Tensor): ``(R, V)`` next-word log-probabilities of
                the rows (overwritten).
            scores (Tensor): ``(S, W)`` beam scores.
            finished (Tensor): ``(S, W)`` bool, beam already emitted EOS.
            slots (Tensor, optional): ``(R,)`` the rows' beams (flat
                index into ``(S, W)``); None: row r is beam r.

        Returns:
            Tensor: ``(S, W * V)``.
        """
        num, width = scores.shape
        flat = scores.view(-1)  # (S * W,)
        if slots is None:  # every beam decoded: no finished beam
            return log_probs.add_(flat[:, None]).view(num, -1)
        candidates = log_probs.new_full((num * width, self.vocab_size),
                                        -math.inf)  # (S * W, V)
        candidates.index_copy_(
            0, slots, log_probs.add_(flat.index_select(0, slots)[:, None]))
        done = finished.view(-1).nonzero()[:, 0]  # (F,)
        candidates[done, self.eos_id] = flat.index_select(0, done)
        return candidates.view(num, -1)  # (S, W * V)

    @staticmethod
    def parent_rows(cache: DecoderCache, parent: Tensor,
                    kept: Optional[Tensor],
                    slots: Optional[Tensor]) -> Tensor:
        """Cache row of each decoded beam's parent.

        Args:
            cache (DecoderCache): Before reordering (old slots).
            parent (Tensor): ``(S', W)`` parent beam of each beam, of the
                samples kept.
            kept (Tensor, optional): ``(S',)`` kept samples' old indices;
                None = all kept.
            slots (Tensor, optional): ``(R',)`` the beams to decode (flat
                index into ``(S', W)``); None = all.

        Returns:
            Tensor: ``(R',)`` long rows of the current cache.
        """
        width = cache.width
        base = torch.arange(parent.size(0), device=parent.device) \
            if kept is None else kept  # (S',)
        parent_slot = (base[:, None] * width + parent).view(-1)  # (S'*W,)
        if slots is not None:
            parent_slot = parent_slot.index_select(0, slots)  # (R',)
        if cache.slots is None:  # row r is slot r
            return parent_slot
        # A live beam's parent was live, so it has a row.
        row_of_slot = torch.full((cache.memory_mask.size(0) * width, ),
                                 -1, dtype=torch.long,
                                 device=parent.device)  # (S * W,)
        row_of_slot[cache.slots] = torch.arange(
            cache.slots.numel(), device=parent.device)
        return row_of_slot.index_select(0, parent_slot)  # (R',)

    @staticmethod
    def keep_best(result_ids: Tensor, result_scores: Tensor, samples: Tensor,
                  ids: Tensor, scores: Tensor) -> None:
        """Write each sample's best beam (the first of equal scores) into
        the results.

        Args:
            result_ids (Tensor): ``(B, T)`` written in place.
            result_scores (Tensor): ``(B,)`` written in place.
            samples (Tensor): ``(N,)`` the samples' batch indices.
            ids (Tensor): ``(N, W, T)`` their beams.
            scores (Tensor): ``(N, W)`` the beams' scores.
        """
        best = scores.argmax(dim=-1)  # (N,)
        index = torch.arange(samples.numel(), device=samples.device)
        result_ids[samples] = ids[index, best]  # (N, T)
        result_scores[samples] = scores[index, best]  # (N,)
