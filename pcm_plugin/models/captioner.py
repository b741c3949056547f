"""PCM-Net captioner: mix-up embedding -> encoder -> decoder (+ loss)."""
import difflib
import math
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample
from torch import nn

from pcm_plugin.clip.release_tower import CLIP_TOWER_PREFIX
from pcm_plugin.registry import MODELS
from pcm_plugin.utils.keywords import (
    check_keywords,
    named_keywords,
    takes_any_keyword,
)

from .clip_reranker import TEXT_TOWER_PREFIX, scored_lengths
from .data_preprocessor import INPUT_KEYS
from .decoder_cache import drop_masked_positions
from .pcm_mixup import FROM_WEIGHTS
from .tokenizer import (
    decode_ids,
    encode_captions,
    is_word_tokenizer,
    load_caption_tokenizer,
    tokenizer_files,
    tokenizer_from_files,
)

# A tokenizer inside single-file releases' weights, as uint8 file contents:
# a word tokenizer's tokenizer.json under TOKENIZER_KEY, a language model's
# tokenizer folder one file per key under TOKENIZER_FILES_KEY + '.' + name.
TOKENIZER_KEY = 'tokenizer_json'
TOKENIZER_FILES_KEY = 'tokenizer_files'


def _build(cfg: Union[dict, nn.Module], key: str) -> nn.Module:
    """Build the sub-module ``model.<key>``, naming close matches for an
    unknown ``type`` or keyword."""
    if isinstance(cfg, nn.Module):
        return cfg
    name = cfg.get('type') if isinstance(cfg, dict) else None
    if isinstance(name, str) and MODELS.get(name) is None:
        close = difflib.get_close_matches(name, list(MODELS.module_dict), n=3)
        raise KeyError(
            f'unknown model component type {name!r}'
            + (f'; did you mean {close}?' if close else '')
            + ' PCM-Net components are registered by `import pcm_plugin` '
            "(configs: custom_imports = dict(imports=['pcm_plugin'], "
            'allow_failed_imports=False)).')
    if isinstance(name, str) and isinstance(cfg, dict):
        init = MODELS.get(name).__init__
        if not takes_any_keyword(init):
            check_keywords(f'model.{key} ({name})',
                           [k for k in cfg if k != 'type'],
                           named_keywords(init))
    return MODELS.build(cfg)


def _width_of(module: nn.Module) -> Optional[int]:
    """A component's model width d, when it declares one."""
    if hasattr(module, 'embed_dim'):
        return module.embed_dim
    norm = getattr(module, 'norm', None)  # PCMMixup: LayerNorm over d
    if isinstance(norm, nn.LayerNorm):
        return norm.normalized_shape[0]
    layers = getattr(module, 'layers', None)  # VisualSemanticEncoder
    if layers is not None and len(layers):
        first = next(m for m in layers[0].modules()
                     if isinstance(m, nn.LayerNorm))
        return first.normalized_shape[0]
    return None


@MODELS.register_module()
class PCMCaptioner(BaseModel):
    """PCM-Net: an encoder-decoder captioner over CLIP features.

    Args:
        mixup (dict | nn.Module): Token embedding, e.g. ``PCMMixup``; called
            as ``mixup(patch_feats, global_feat)`` and returning ``tokens``
            and ``token_mask``.
        encoder (dict | nn.Module): e.g. ``VisualSemanticEncoder``.
        decoder (dict | nn.Module): e.g. ``CaptionTransformerDecoder``; its
            ``vocab_size`` defaults to the tokenizer's size.
        loss (dict | nn.Module): e.g. ``CLIPWeightedCELoss``; called as
            ``loss(logits, targets, clip_cos)``.
        tokenizer (str): ``tokenizer.json`` from ``tools/build_vocab.py``,
            or ``'from_weights'``: it comes with the weights loaded later
            (single-file releases, the model zoo); then the decoder config
            must give ``vocab_size``.
        max_len (int): Maximum caption length in words (training clip and
            decoding steps). Defaults to 20. The decoder's own ``max_len``
            (its default when used alone) must equal it.
        clip_weighted (bool): Pass each sample's CLIP image-caption cosine
            to the loss. False gives plain (label-smoothed) CE, the "Base"
            and "+PCM" ablation rows. Defaults to True.
        image_encoder (dict, optional): e.g. ``OpenCLIPImageEncoder``: take
            ``images`` (B, 3, I, I) as inputs too and run the frozen CLIP
            tower inside (end to end; kept out of the state dict).
            Defaults to None (features only).
        reranker (dict, optional): e.g. ``CLIPReranker``: at test time
            keep the W final beams and return the one it picks by
            log-probability and CLIP cosine (docs/inference.md). Kept out
            of the state dict. Defaults to None (the best beam, as the
            official code).
        data_preprocessor (dict, optional): Defaults to
            ``CaptionFeaturePreprocessor``.
        compile_layers (bool | dict): ``torch.compile`` each encoder and
            decoder layer (those of teacher forcing and of the cached
            decoding steps alike) with dynamic shapes; a dict adds
            ``torch.compile`` options, e.g. ``dict(mode='max-autotune')``.
            Meant for GPUs: on CPU it measured slower for the training
            step and no faster for beam search, after minutes of compiling
            (docs/benchmarks/speed.md). mmengine's own
            ``cfg.compile`` compiles ``train_step`` with the tokenizer in
            it and recompiles for every batch of new captions. Weights and
            checkpoints are unchanged. Defaults to False.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, *, mixup: Union[dict, nn.Module],
                 encoder: Union[dict, nn.Module],
                 decoder: Union[dict, nn.Module],
                 loss: Union[dict, nn.Module], tokenizer: str,
                 max_len: int = 20, clip_weighted: bool = True,
                 image_encoder: Optional[Union[dict, nn.Module]] = None,
                 reranker: Optional[Union[dict, nn.Module]] = None,
                 data_preprocessor: Optional[dict] = None,
                 compile_layers: Union[bool, dict] = False,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='CaptionFeaturePreprocessor')
        # Built here, through mmpretrain's registry: BaseModel would use
        # mmengine's root registry, which only finds plugin types inside a
        # Runner's default scope.
        super().__init__(
            data_preprocessor=_build(data_preprocessor, 'data_preprocessor'),
            init_cfg=init_cfg)
        self.tokenizer = None if tokenizer == FROM_WEIGHTS else \
            load_caption_tokenizer(tokenizer)
        if isinstance(decoder, dict):
            decoder = dict(decoder)
            if self.tokenizer is not None:
                decoder.setdefault('vocab_size', len(self.tokenizer))
            elif 'vocab_size' not in decoder:
                raise ValueError(
                    f"tokenizer='{FROM_WEIGHTS}' needs model.decoder."
                    'vocab_size (the released model\'s vocabulary size)')
            decoder.setdefault('max_len', max_len)
        self.mixup = _build(mixup, 'mixup')
        self.encoder = _build(encoder, 'encoder')
        self.decoder = _build(decoder, 'decoder')
        self.loss_module = _build(loss, 'loss')
        self.image_encoder = None if image_encoder is None else \
            _build(image_encoder, 'image_encoder')
        self.reranker = None if reranker is None else \
            _build(reranker, 'reranker')
        if self.tokenizer is not None:
            self._check_vocab(tokenizer)
        self.max_len, self.clip_weighted = max_len, clip_weighted
        self._check_agreement()
        self._register_load_state_dict_pre_hook(self._take_tokenizer)
        if compile_layers:
            # Shapes vary by design (caption length, cache length, batch x
            # beams): compiled as dynamic from the start, a decoder layer
            # needs 7 graphs for training, beam and greedy search (the
            # beam width is part of a step's graph, 1 vs more), not more
            # than 8, dynamo's limit past which it silently runs eagerly.
            options = dict(dynamic=True)
            if isinstance(compile_layers, dict):
                options.update(compile_layers)
            for part in (self.encoder, self.decoder):
                # In place (nn.Module.compile): parameter names unchanged.
                for layer in getattr(part, 'layers', [part]):
                    layer.compile(**options)

    def _check_vocab(self, source: str) -> None:
        if self.decoder.vocab_size != len(self.tokenizer):
            raise ValueError(
                f'decoder.vocab_size={self.decoder.vocab_size} but the '
                f'tokenizer {source} has {len(self.tokenizer)} entries')

    def _take_tokenizer(self, state_dict, prefix, *args) -> None:
        """Consume a tokenizer carried by the weights (single-file
        releases; used when the config asked for it), drop the CLIP
        image tower they may carry (``OpenCLIPImageEncoder(release=...)``
        reads it; the captioner takes features), and hand the re-ranker's
        CLIP text tower to the re-ranker (dropped without one)."""
        for key in [k for k in state_dict
                    if k.startswith(prefix + CLIP_TOWER_PREFIX)]:
            del state_dict[key]
        carried = prefix + TEXT_TOWER_PREFIX
        tower = {key[len(carried):]: state_dict.pop(key)
                 for key in [k for k in state_dict if k.startswith(carried)]}
        if tower and self.reranker is not None:
            self.reranker.load_text_tower(tower)
        files = {}
        text = state_dict.pop(prefix + TOKENIZER_KEY, None)
        if text is not None:
            files['tokenizer.json'] = bytes(text.tolist())
        folder = prefix + TOKENIZER_FILES_KEY + '.'
        for key in [k for k in state_dict if k.startswith(folder)]:
            files[key[len(folder):]] = bytes(state_dict.pop(key).tolist())
        if not files or self.tokenizer is not None:
            return
        self.tokenizer = tokenizer_from_files(
            files, source='the tokenizer in the weights')
        self._check_vocab('in the weights')
        self._check_agreement()  # the tokenizer's [EOS] is known now

    def require_tokenizer(self):
        """The caption tokenizer; a clear error where it is still to come
        from weights (a one-file release's config, before loading)."""
        if self.tokenizer is None:
            raise RuntimeError(
                f"this model's tokenizer is '{FROM_WEIGHTS}': load a "
                'single-file release first (e.g. mmpretrain.get_model(NAME, '
                'pretrained=RELEASE.safetensors))')
        return self.tokenizer

    def files_state(self) -> Dict[str, torch.Tensor]:
        """Tokenizer and concept bank as tensors, to carry inside released
        weights (single-file releases): the tokenizer's files
        (``tokenizer_files``) as uint8 bytes, a word tokenizer's under
        :data:`TOKENIZER_KEY`, a language model's one per
        ``TOKENIZER_FILES_KEY.NAME``."""
        tokenizer = self.require_tokenizer()
        files = {name: torch.tensor(list(data), dtype=torch.uint8)
                 for name, data in tokenizer_files(tokenizer).items()}
        state = {TOKENIZER_KEY: files['tokenizer.json']} \
            if is_word_tokenizer(tokenizer) else \
            {f'{TOKENIZER_FILES_KEY}.{name}': data
             for name, data in files.items()}
        if hasattr(self.mixup, 'bank_state') and getattr(
                self.mixup, 'clip_head', None) is not None:
            state.update({f'mixup.{k}': v
                          for k, v in self.mixup.bank_state().items()})
        return state

    def _check_agreement(self) -> None:
        """Settings given to several components must agree (one value)."""
        widths = dict(mixup=_width_of(self.mixup),
                      encoder=_width_of(self.encoder),
                      decoder=getattr(self.decoder, 'embed_dim', None))
        known = {k: v for k, v in widths.items() if v is not None}
        if len(set(known.values())) > 1:
            raise ValueError(
                f'model widths disagree: {known}; set the same embed_dim in '
                'model.mixup, model.encoder and model.decoder')
        # A tokenizer that comes with the weights is checked when it comes
        # (_take_tokenizer): its [EOS] is a language model's, not 0.
        eos = None if self.tokenizer is None else \
            self.tokenizer.eos_token_id
        checks = (('max_len', getattr(self.decoder, 'max_len', None),
                   self.max_len, 'model.max_len'),
                  ('eos_id', getattr(self.decoder, 'eos_id', None), eos,
                   f'the tokenizer\'s [EOS] id {eos}'),
                  ('bos_id', getattr(self.decoder, 'bos_id', None), eos,
                   f'the tokenizer\'s [EOS] id {eos} (it starts every '
                   'caption)'))
        for name, value, expected, source in checks:
            if None not in (value, expected) and value != expected:
                raise ValueError(
                    f'model.decoder.{name}={value} disagrees with {source} '
                    f'({expected}); leave it out of the decoder config or '
                    'make them equal')

    def forward(self, inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """Dispatch on ``mode``.

        Args:
            inputs (dict): ``patch_feats`` (B, N, Dv), ``global_feat`` (B, Dg).
            data_samples (list[DataSample], optional): ``gt_caption`` and
                ``clip_cos`` for ``'loss'``; filled with ``pred_caption`` by
                ``'predict'``.
            mode (str): ``'tensor'`` returns the encoder memory (B, L, d);
                ``'loss'`` a dict of losses; ``'predict'`` data samples.
        """
        if mode == 'tensor':
            return self.encode(inputs)[0]
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def encode(self, inputs: Dict[str, torch.Tensor], *,
               drop_masked: bool = False):
        """Embed + encode: ``memory`` (B, L, d) and ``mask`` (B, L).

        Args:
            inputs (dict): As :meth:`forward` takes them.
            drop_masked (bool): Drop the masked tokens (at test time the
                unselected textual tokens, 44 of 99 at the COCO size)
                before the encoder, where that is exactly equivalent
                (:func:`~pcm_plugin.models.caption_decoder.
                drop_masked_positions`): the visible positions' memory is
                the same, in order, and L shrinks. Defaults to False (the
                memory keeps the mix-up's token layout).
        """
        emb = self.embed(inputs)
        tokens, mask = emb['tokens'], emb['token_mask']
        if drop_masked:
            tokens, mask = drop_masked_positions(tokens, mask)
        return self.encoder(tokens, mask), mask

    def embed(self, inputs: Dict[str, torch.Tensor]) -> Dict[str,
                                                              torch.Tensor]:
        """The mix-up's output on the features (or on the CLIP features of
        ``images``, with an ``image_encoder``): ``tokens`` (B, L, d),
        ``token_mask`` (B, L) and what else it returns (``PCMMixup``:
        ``replace_mask``, ``concept_idx``)."""
        inputs = self.clip_features(inputs)
        return self.mixup(inputs['patch_feats'], inputs['global_feat'])

    def clip_features(self, inputs: Dict[str, torch.Tensor]
                      ) -> Dict[str, torch.Tensor]:
        """``patch_feats`` (B, N, Dv) and ``global_feat`` (B, Dg): the
        inputs themselves, or the image encoder's on ``images``."""
        if 'images' in inputs:
            if self.image_encoder is None:
                raise KeyError('the inputs are images but the model has no '
                               'image_encoder: set model.image_encoder=dict('
                               "type='OpenCLIPImageEncoder', ...) or feed "
                               'CLIP features')
            inputs = self.image_encoder(inputs['images'])
        missing = [k for k in INPUT_KEYS if k not in inputs]
        if missing:
            raise KeyError(f'model inputs lack {missing}; the pipeline must '
                           'end with LoadCLIPFeatures + PackCaptionInputs')
        return inputs

    def _clip_cos(self, data_samples: List[DataSample], device) -> Optional[
            torch.Tensor]:
        if not self.clip_weighted:
            return None
        values = [s.get('clip_cos') for s in data_samples]
        for sample, value in zip(data_samples, values):
            if value is None or math.isnan(value):
                raise ValueError(
                    f'training sample {sample.get("image_id")} has no CLIP '
                    'image-caption cosine: extract the training features '
                    'with their captions (tools/extract_features.py), or '
                    'set model.clip_weighted=False for plain CE')
        return torch.tensor(values, dtype=torch.float32, device=device)

    def loss(self, inputs: Dict[str, torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Teacher-forced loss. Returns ``loss_ce`` and, when CLIP-weighted,
        the batch mean of the cosines (``clip_cos``, logged only)."""
        memory, mask = self.encode(inputs)
        device = memory.device
        captions = [s.gt_caption for s in data_samples]
        input_ids, targets, input_mask = (
            t.to(device) for t in encode_captions(
                self.require_tokenizer(), captions,
                max_len=self.max_len))  # (B, T)
        logits = self.decoder(input_ids, memory, mask, input_mask)  # (B,T,V)
        clip_cos = self._clip_cos(data_samples, device)
        losses = dict(loss_ce=self.loss_module(logits, targets, clip_cos))
        if clip_cos is not None:
            losses['clip_cos'] = clip_cos.mean().detach()
        return losses

    @torch.no_grad()
    def generate(self, inputs: Dict[str, torch.Tensor],
                 beam_size: Optional[int] = None) -> List[str]:
        """Captions for a batch of features (beam search by default; with
        ``reranker``, its pick among the final beams)."""
        if self.reranker is not None:
            found = self.caption_candidates(inputs, beam_size=beam_size)
            best = self.reranker(found['log_probs'], found['lengths'],
                                 found['cosines'])  # (B,)
            return [captions[i] for captions, i in zip(found['captions'],
                                                       best.tolist())]
        memory, mask = self.encode(inputs, drop_masked=True)
        ids, _ = self.decoder.generate(memory, mask, beam_size=beam_size,
                                       max_len=self.max_len)
        return decode_ids(self.require_tokenizer(), ids)

    @torch.no_grad()
    def caption_candidates(self, inputs: Dict[str, torch.Tensor],
                           beam_size: Optional[int] = None) -> Dict:
        """The final beams of a batch and what the re-ranker scores them
        by (:mod:`.clip_reranker`); ``tools/choose_rerank_weight.py``
        keeps them to re-score at every fusion weight.

        Args:
            inputs (dict): As :meth:`forward` takes them.
            beam_size (int, optional): Beams kept, W. Defaults to
                ``reranker.num_candidates``.

        Returns:
            dict: ``captions`` (B lists of W strings, best beam first),
            ``log_probs`` (B, W) summed log-probabilities, ``lengths``
            (B, W) tokens they count, ``cosines`` (B, W) CLIP
            image-caption cosines.
        """
        if self.reranker is None:
            raise RuntimeError('caption_candidates needs model.reranker '
                               "(e.g. dict(type='CLIPReranker', ...))")
        inputs = self.clip_features(inputs)
        memory, mask = self.encode(inputs, drop_masked=True)
        width = beam_size or self.reranker.num_candidates
        ids, log_probs = self.decoder.generate(
            memory, mask, beam_size=width, max_len=self.max_len,
            all_beams=True)  # (B, W, T), (B, W)
        flat = decode_ids(self.require_tokenizer(),
                          ids.flatten(0, 1))  # (B * W, T) -> B * W captions
        captions = [flat[start:start + width]
                    for start in range(0, len(flat), width)]
        return dict(captions=captions, log_probs=log_probs,
                    lengths=scored_lengths(ids, self.decoder.eos_id),
                    cosines=self.reranker.cosines(inputs['global_feat'],
                                                  captions))

    def predict(self, inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """Write ``pred_caption`` onto the data samples (new ones if None)."""
        captions = self.generate(inputs)
        if data_samples is None:
            data_samples = [DataSample() for _ in captions]
        for sample, caption in zip(data_samples, captions):
            sample.pred_caption = caption
        return data_samples
