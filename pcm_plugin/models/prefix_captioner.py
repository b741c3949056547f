"""A second captioner family: CLIP-prefix GPT-2 (ClipCap / ViECap).

The visual tokens (``PCMMixup``'s output, optionally through
``VisualSemanticEncoder``) are mapped to a prefix of the language model's
input embeddings (:class:`~.prefix_mapper.PrefixMapper`), optionally
followed by ViECap's entity hard prompt, and a GPT-2 language model
(:class:`~.gpt2_prefix_decoder.GPT2PrefixDecoder`) is trained with teacher
forcing to continue it with the caption and decodes by beam search through
its key/value cache. ``PCMMixup``, ``VisualSemanticEncoder`` and
``CLIPWeightedCELoss`` serve it unchanged: it is ``PCMCaptioner`` with
another encode step (visual tokens -> prefix) and another decoder, so
tokenisation, the CLIP-weighted loss, beam search, releases' tokenizer and
the forward modes are the very same code.

ViECap's hard prompt: the entities are the K concepts ``PCMMixup``
retrieves for the image (from the clean global feature, in training and at
test alike), written into a template (``'There are {} in the image.'``)
and embedded by the language model's own word embeddings. ViECap drops
each entity at random during training (``entity_drop``) so the model
learns not to trust them blindly.

Shape letters are those of docs/method.md §3.0, plus three of this family:
P soft prefix positions (the mapper's), Q the whole prefix (P + the longest
hard prompt) and D the language model's width.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from pcm_plugin.registry import MODELS

from .captioner import PCMCaptioner, _build, _width_of
from .decoder_cache import drop_masked_positions


@MODELS.register_module()
class PrefixLMCaptioner(PCMCaptioner):
    """Mix-up tokens -> [encoder] -> mapper -> prefix -> GPT-2.

    Args:
        mixup (dict | nn.Module): e.g. ``PCMMixup`` (``mode='none'``: the
            plain visual tokens of the Base model).
        mapper (dict | nn.Module): e.g. ``PrefixMapper``; called as
            ``mapper(tokens, token_mask)``, returning ``(B, P, D)``.
        decoder (dict | nn.Module): e.g. ``GPT2PrefixDecoder``; its
            ``vocab_size`` defaults to the tokenizer's size.
        loss (dict | nn.Module): e.g. ``CLIPWeightedCELoss``.
        tokenizer (str): The word tokenizer's ``tokenizer.json``
            (random-weight GPT-2: its vocabulary is the model's), or the
            pretrained GPT-2 folder (its BPE tokenizer, to go with its
            weights; a release carries its tokenizer files), or
            ``'from_weights'`` (a one-file release's).
        encoder (dict | nn.Module, optional): e.g.
            ``VisualSemanticEncoder`` between the mix-up and the mapper.
            Defaults to None (ViECap has none).
        max_len (int): Maximum caption length in tokens. Defaults to 20.
        clip_weighted (bool): Pass the CLIP cosines to the loss.
            Defaults to True.
        entity_prompt (str, optional): Template of the hard prompt with
            one ``{}`` for the comma-separated entities, e.g. ViECap's
            ``'There are {} in the image.'``. Needs a mix-up that
            retrieves concepts (not ``mode='none'``). With the word
            tokenizer, template words outside its vocabulary become
            ``[UNK]``. Defaults to None (soft prefix only).
        entity_drop (float): Probability of dropping each entity in
            training. Defaults to 0.
        image_encoder (dict, optional): As ``PCMCaptioner``.
        data_preprocessor (dict, optional): As ``PCMCaptioner``.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, *, mixup: Union[dict, nn.Module],
                 mapper: Union[dict, nn.Module],
                 decoder: Union[dict, nn.Module],
                 loss: Union[dict, nn.Module], tokenizer: str,
                 encoder: Optional[Union[dict, nn.Module]] = None,
                 max_len: int = 20, clip_weighted: bool = True,
                 entity_prompt: Optional[str] = None,
                 entity_drop: float = 0.0,
                 image_encoder: Optional[Union[dict, nn.Module]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            mixup=mixup, encoder=nn.Identity() if encoder is None else
            encoder, decoder=decoder, loss=loss, tokenizer=tokenizer,
            max_len=max_len, clip_weighted=clip_weighted,
            image_encoder=image_encoder, data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if encoder is None:
            self.encoder = None
        self.mapper = _build(mapper, 'mapper')
        self._check_mapper()
        if entity_prompt is not None:
            if getattr(self.mixup, 'mode', None) == 'none' or not hasattr(
                    self.mixup, 'concept_words'):
                raise ValueError(
                    'model.entity_prompt needs the concepts the mix-up '
                    "retrieves: PCMMixup with mode 'top' or 'random' (or "
                    'set entity_prompt=None)')
            if entity_prompt.count('{}') != 1:
                raise ValueError(
                    f'model.entity_prompt={entity_prompt!r} must hold one '
                    "'{}' for the entities")
        if not 0.0 <= entity_drop < 1.0:
            raise ValueError(f'model.entity_drop must be in [0, 1), got '
                             f'{entity_drop}')
        self.entity_prompt, self.entity_drop = entity_prompt, entity_drop

    def _check_mapper(self) -> None:
        """The mapper's widths must be the mix-up's and the LM's."""
        checks = (('embed_dim', _width_of(self.mixup),
                   'model.mixup.embed_dim'),
                  ('out_dim', getattr(self.decoder, 'lm_width', None),
                   "the language model's n_embd"))
        for name, expected, source in checks:
            value = getattr(self.mapper, name, None)
            if None not in (value, expected) and value != expected:
                raise ValueError(
                    f'model.mapper.{name}={value} disagrees with {source} '
                    f'({expected}); make them equal')

    def encode(self, inputs: Dict[str, Tensor], *,
               drop_masked: bool = False) -> Tuple[Tensor, Tensor]:
        """The language model's prefix: ``memory`` (B, Q, D) and ``mask``
        (B, Q), Q = P soft positions + the longest hard prompt.

        Args:
            inputs (dict): ``patch_feats`` (B, N, Dv), ``global_feat``
                (B, Dg) (or ``images`` with an image encoder).
            drop_masked (bool): Drop the masked visual tokens first
                (exactly equivalent, as in ``PCMCaptioner``).
        """
        emb = self.embed(inputs)
        tokens, mask = emb['tokens'], emb['token_mask']  # (B, L, d), (B, L)
        if drop_masked:
            tokens, mask = drop_masked_positions(tokens, mask)
        if self.encoder is not None:
            tokens = self.encoder(tokens, mask)  # (B, L, d)
        prefix = self.mapper(tokens, mask)  # (B, P, D)
        prefix_mask = mask.new_ones(prefix.shape[:2])  # (B, P)
        if self.entity_prompt is None:
            return prefix, prefix_mask
        ids, ids_mask = self.prompt_ids(emb['concept_idx'])  # (B, Q - P) each
        prompt = self.decoder.embed_tokens(ids.to(prefix.device))
        return (torch.cat([prefix, prompt], dim=1),  # (B, Q, D)
                torch.cat([prefix_mask, ids_mask.to(prefix.device)], dim=1))

    def prompt_texts(self, concept_idx: Tensor) -> List[str]:
        """The entity prompt of each image from its ``(B, K)`` concepts
        (in training, each entity dropped with ``entity_drop``)."""
        words = self.mixup.concept_words
        texts = []
        for row in concept_idx.tolist():
            names = [words[i] for i in row]
            if self.training and self.entity_drop > 0:
                kept = (torch.rand(len(names)) >= self.entity_drop).tolist()
                names = [n for n, keep in zip(names, kept) if keep]
            texts.append(self.entity_prompt.format(', '.join(names)))
        return texts

    def prompt_ids(self, concept_idx: Tensor) -> Tuple[Tensor, Tensor]:
        """Token ids ``(B, H)`` of the entity prompts, right-padded, and
        their mask ``(B, H)`` (True = token)."""
        tokenizer = self.require_tokenizer()
        ids = tokenizer(self.prompt_texts(concept_idx),
                        add_special_tokens=False)['input_ids']
        length = max(len(seq) for seq in ids)
        out = torch.full((len(ids), length), self.decoder.eos_id,
                         dtype=torch.long)  # (B, H); padding is masked
        mask = torch.zeros(len(ids), length, dtype=torch.bool)  # (B, H)
        for i, seq in enumerate(ids):
            out[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, :len(seq)] = True
        return out, mask
