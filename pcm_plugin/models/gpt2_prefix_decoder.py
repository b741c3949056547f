"""GPT-2 as a prefix-conditioned caption decoder (ClipCap / ViECap).

The language model reads ``[prefix embeddings] [BOS] w_1 .. w_t`` and
predicts ``w_{t+1}``; the prefix ("memory" here, so the decoder has
:class:`~.caption_decoder.CaptionTransformerDecoder`'s interface and
:func:`~.beam_search.beam_search` drives both) is the mapping network's
output, possibly followed by a hard prompt of word embeddings. A prefix
may hold masked positions (padding of hard prompts of different lengths):
they are hidden from attention and skipped by the position ids, which is
exactly the language model on the prefix without them. Its first position
must be visible, so that no query ever sees only masked keys.

The model is a ``transformers`` ``GPT2LMHeadModel``: loaded offline from a
local folder (``lm_path``, e.g. a GPT-2 download holding ``config.json``
and ``model.safetensors``) or built with random weights from ``lm_config``
(tests, the mini world). Incremental decoding keeps GPT-2's own per-layer
key/value tensors and reorders their rows for the beams.

Shape letters: docs/method.md §3.0, with Q (prefix positions) and D (the
language model's width) as in :mod:`.prefix_captioner`.
"""
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor

from pcm_plugin.registry import MODELS

from .beam_search import beam_search


@dataclass
class PrefixLMCache:
    """State of incremental decoding: R rows (hypotheses) over B' samples.

    Attributes:
        past (list[tuple[Tensor, Tensor]]): Per layer, GPT-2's keys and
            values of each row, ``(R, H, Q + S, Dh)`` (S = ``length``).
        attention_mask (Tensor): ``(R, Q + S)`` long, 1 = visible.
        positions (Tensor): ``(R,)`` long position id of each row's next
            token (its visible tokens so far).
        memory_mask (Tensor): ``(B', Q)`` bool prefix mask of the samples
            still decoded (:func:`~.beam_search.parent_rows` counts them).
        slots (Tensor, optional): ``(R,)`` row r is beam ``slots[r] %
            width`` of sample ``slots[r] // width``; None: row r is slot r.
        width (int): Beams per sample.
        length (int): Tokens decoded so far.
    """
    past: List[Tuple[Tensor, Tensor]]
    attention_mask: Tensor
    positions: Tensor
    memory_mask: Tensor
    slots: Optional[Tensor]
    width: int
    length: int = 0


def position_ids(mask: Tensor) -> Tensor:
    """Position of each token among the visible ones: ``(B, L)`` long from
    a ``(B, L)`` mask (a masked token repeats its predecessor's)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


@MODELS.register_module()
class GPT2PrefixDecoder(BaseModule):
    """GPT-2 language model conditioned on a prefix of input embeddings.

    Args:
        vocab_size (int): V; the captioner sets it to its tokenizer's size.
            With ``lm_path`` it must equal the model's.
        lm_path (str, optional): Local folder of a pretrained GPT-2 (read
            offline). Defaults to None: random weights from ``lm_config``.
        lm_config (dict, optional): ``transformers.GPT2Config`` keywords
            for random weights, e.g. ``dict(n_embd=96, n_layer=2,
            n_head=4, n_positions=64)``; ``vocab_size`` comes from above.
        max_len (int): Default number of decoding steps. Defaults to 20.
        beam_size (int): Default beam size (1 = greedy). Defaults to 3.
        bos_id (int, optional): First caption token. Defaults to the
            model's ``bos_token_id`` with ``lm_path``, else 0 (the word
            tokenizer's ``[EOS]``).
        eos_id (int, optional): End token; as ``bos_id``.
        freeze (bool): Keep the language model's weights fixed (ClipCap's
            "frozen GPT-2" variant). Defaults to False (ViECap fine-tunes).
        attn_impl (str): ``'eager'`` or ``'sdpa'`` (GPT-2's attention
            kernels). Defaults to 'eager'.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, *, vocab_size: int, lm_path: Optional[str] = None,
                 lm_config: Optional[dict] = None, max_len: int = 20,
                 beam_size: int = 3, bos_id: Optional[int] = None,
                 eos_id: Optional[int] = None, freeze: bool = False,
                 attn_impl: str = 'eager', init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.lm = build_gpt2(lm_path, lm_config, vocab_size, attn_impl)
        self.lm_path = lm_path
        config = self.lm.config
        if config.vocab_size != vocab_size:
            raise ValueError(
                f'GPT2PrefixDecoder: the language model {lm_path} has '
                f'{config.vocab_size} words but the tokenizer {vocab_size}; '
                'use the tokenizer of the same folder (model.tokenizer)')
        # The word tokenizer's [EOS] (0) starts and ends every caption;
        # GPT-2's end-of-text token does both there.
        first, last = (0, 0) if lm_path is None else (
            config.bos_token_id, config.eos_token_id)
        self.bos_id = first if bos_id is None else bos_id
        self.eos_id = last if eos_id is None else eos_id
        self.vocab_size, self.max_len = vocab_size, max_len
        self.beam_size = beam_size
        self.lm_width = config.n_embd
        self.max_positions = config.n_positions
        if freeze:
            self.lm.requires_grad_(False)

    def release_config(self) -> dict:
        """The config keys that rebuild this decoder from a released
        model alone (``pcm_plugin.apis.release``): a pretrained GPT-2's
        architecture as data (``lm_config``) in place of ``lm_path``, a
        folder of the publishing machine (the release's weights hold its
        weights), and the BOS/EOS ids the folder gave. Nothing to change
        for random weights (``lm_config`` already)."""
        if self.lm_path is None:
            return {}
        return dict(lm_path=None, lm_config=gpt2_architecture(self.lm.config),
                    bos_id=self.bos_id, eos_id=self.eos_id)

    def init_weights(self) -> None:
        """Leave the language model as built: pretrained weights must not
        be re-initialised, random ones were drawn at construction."""

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Word embeddings ``(B, n, D)`` of ``(B, n)`` ids (hard prompts,
        caption words)."""
        return self.lm.transformer.wte(ids)

    def check_memory(self, memory: Tensor, memory_mask: Tensor) -> None:
        """Raise a clear error on a malformed prefix / prefix mask."""
        if memory.dim() != 3 or memory.size(-1) != self.lm_width:
            raise ValueError(
                f'GPT2PrefixDecoder: the prefix must be (B, Q, '
                f'{self.lm_width}), got {tuple(memory.shape)}; set '
                "model.mapper.out_dim to the language model's n_embd")
        if (memory_mask.dtype != torch.bool
                or memory_mask.shape != memory.shape[:2]
                or not bool(memory_mask[:, 0].all())):
            raise ValueError(
                'GPT2PrefixDecoder: the prefix mask must be a bool (B, Q) '
                'tensor with True = visible and position 0 visible, got '
                f'{memory_mask.dtype} {tuple(memory_mask.shape)}')

    def _run(self, embeds: Tensor, mask: Tensor, positions: Tensor, *,
             past=None, use_cache: bool = False):
        """GPT-2 over ``embeds`` (B, n, D) after ``past``: its logits
        ``(B, n, V)`` and, with ``use_cache``, its keys and values."""
        if int(positions.max()) >= self.max_positions:
            raise ValueError(
                f'GPT2PrefixDecoder: position {int(positions.max())} '
                f'exceeds the model\'s n_positions={self.max_positions}; '
                'raise lm_config.n_positions or shorten the prefix')
        out = self.lm(inputs_embeds=embeds, attention_mask=mask.long(),
                      position_ids=positions, past_key_values=past,
                      use_cache=use_cache)
        return out.logits, out.past_key_values

    def forward(self, input_ids: Tensor, memory: Tensor, memory_mask: Tensor,
                input_mask: Optional[Tensor] = None) -> Tensor:
        """Teacher-forced logits of the caption positions.

        Args:
            input_ids (Tensor): ``(B, T)`` long, ``[bos, w_1, ...]``.
            memory (Tensor): ``(B, Q, D)`` prefix embeddings.
            memory_mask (Tensor): ``(B, Q)`` bool, True = visible.
            input_mask (Tensor, optional): ``(B, T)`` bool, True = real
                token. Defaults to None (all real).

        Returns:
            Tensor: ``(B, T, V)``; position t predicts word t + 1.
        """
        self.check_memory(memory, memory_mask)
        if input_mask is None:
            input_mask = torch.ones_like(input_ids, dtype=torch.bool)
        embeds = torch.cat([memory, self.embed_tokens(input_ids)],
                           dim=1)  # (B, Q + T, D)
        mask = torch.cat([memory_mask, input_mask.bool()], dim=1)
        logits, _ = self._run(embeds, mask, position_ids(mask))
        return logits[:, memory.size(1):]  # (B, T, V)

    def init_cache(self, memory: Tensor, memory_mask: Tensor, *,
                   width: int = 1,
                   max_len: Optional[int] = None) -> PrefixLMCache:
        """Run the prefix once: a cache of one row per sample, in slot 0
        of its group of ``width`` (``max_len`` is unused: GPT-2's cache
        grows by concatenation)."""
        self.check_memory(memory, memory_mask)
        _, past = self._run(memory, memory_mask, position_ids(memory_mask),
                            use_cache=True)
        slots = None if width == 1 else torch.arange(
            memory.size(0), device=memory.device) * width  # (B,)
        return PrefixLMCache(
            past=list(past), attention_mask=memory_mask.long(),
            positions=memory_mask.sum(dim=1), memory_mask=memory_mask,
            slots=slots, width=width)

    def step(self, input_ids: Tensor, cache: PrefixLMCache) -> Tensor:
        """Decode one token per row, extending ``cache``.

        Args:
            input_ids (Tensor): ``(R,)`` latest token of each row.
            cache (PrefixLMCache): From :meth:`init_cache` or a step.

        Returns:
            Tensor: ``(R, V)`` next-word logits.
        """
        mask = torch.cat([cache.attention_mask,
                          cache.attention_mask.new_ones(len(input_ids), 1)],
                         dim=1)  # (R, Q + S + 1)
        logits, past = self._run(
            self.embed_tokens(input_ids[:, None]), mask,
            cache.positions[:, None], past=tuple(cache.past),
            use_cache=True)  # (R, 1, V)
        cache.past, cache.attention_mask = list(past), mask
        cache.positions = cache.positions + 1
        cache.length += 1
        return logits[:, 0]

    @staticmethod
    def reorder_cache(cache: PrefixLMCache, rows: Tensor, *,
                      slots: Optional[Tensor] = None,
                      memories: Optional[Tensor] = None) -> None:
        """New row i = old ``rows[i]``; ``slots`` and ``memories`` as in
        :func:`~.decoder_cache.reorder_cache`."""
        cache.past = [(key.index_select(0, rows), value.index_select(0, rows))
                      for key, value in cache.past]  # (new R, H, Q + S, Dh)
        cache.attention_mask = cache.attention_mask.index_select(0, rows)
        cache.positions = cache.positions.index_select(0, rows)
        if memories is not None:
            cache.memory_mask = cache.memory_mask.index_select(0, memories)
        cache.slots = slots

    def generate(self, memory: Tensor, memory_mask: Tensor, *,
                 beam_size: Optional[int] = None,
                 max_len: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Batched beam search through the language model (beam_size 1 =
        greedy); returns ``ids`` (B, T) and ``scores`` (B,) as
        :func:`~.beam_search.beam_search`."""
        beam = self.beam_size if beam_size is None else beam_size
        steps = self.max_len if max_len is None else max_len
        if beam < 1 or steps < 1:
            raise ValueError('GPT2PrefixDecoder.generate: beam_size '
                             f'({beam}) and max_len ({steps}) must be >= 1.')
        return beam_search(self, memory, memory_mask, beam=beam, steps=steps)


# GPT2Config entries that describe a saved folder, not the architecture;
# vocab_size is the decoder's own argument.
NOT_ARCHITECTURE = ('vocab_size', 'transformers_version', 'torch_dtype',
                    'architectures', 'model_type')


def gpt2_architecture(config) -> dict:
    """``lm_config`` keywords that build ``config``'s model (its entries
    other than GPT2Config's defaults), as JSON data: no file name, no
    path."""
    return {key: value for key, value in config.to_diff_dict().items()
            if key not in NOT_ARCHITECTURE and not key.startswith('_')}


def build_gpt2(lm_path: Optional[str], lm_config: Optional[dict],
               vocab_size: int, attn_impl: str):
    """``GPT2LMHeadModel`` from a local folder, or with random weights."""
    # deferred: transformers' GPT-2 loads only for a GPT-2 decoder
    from transformers import GPT2Config, GPT2LMHeadModel
    if lm_path is not None:
        if not osp.isfile(osp.join(lm_path, 'config.json')):
            raise FileNotFoundError(
                f'GPT-2 folder {lm_path} has no config.json: download GPT-2 '
                '(config.json, model.safetensors and the tokenizer files) '
                'into it, or set model.decoder.lm_path=None and lm_config '
                'for random weights')
        return GPT2LMHeadModel.from_pretrained(
            lm_path, local_files_only=True, attn_implementation=attn_impl)
    if lm_config is None:
        raise ValueError('GPT2PrefixDecoder needs lm_path (a local GPT-2 '
                         'folder) or lm_config (random weights)')
    config = GPT2Config(**dict(lm_config, vocab_size=vocab_size))
    config._attn_implementation = attn_impl
    return GPT2LMHeadModel(config)
