"""Re-ranking the final beams with CLIP at test time (beyond the paper).

PCM-Net's beam search keeps W beams and returns the one with the highest
summed log-probability (docs/method.md §3.8). With a re-ranker the
captioner keeps all W, and returns the beam with the highest fused score

    s = (1 - w) * log p(c) / n(c) ** a + w * cos(E_T(c), g)

where ``log p(c)`` is the beam's summed log-probability, ``n(c)`` the
number of tokens it counts (the words and EOS), ``a`` the length
penalty (1: the mean log-probability per token, 0: the beam search's own
score), ``g`` the image's global CLIP feature (already in CLIP's joint
space: ``ln_post(CLS) @ proj`` of the CLIP that extracted the features)
and ``E_T`` that CLIP's text tower. ``w`` is chosen on the val split
(:mod:`pcm_plugin.apis.rerank_weight`), never on test.

With ``w = 0`` and ``a = 0`` the fused score is the summed log-probability
itself and ties go to the earlier beam, so the caption is plain beam
search's (tested). With ``w = 0`` and ``a = 1`` it is the beam with the
best mean log-probability, which may differ.

The CLIP text tower is frozen and kept out of the state dict (any trained
checkpoint loads); its image tower is dropped, the image side being the
stored feature.

A released model re-ranks as its config did (``pcm_plugin.apis.release``,
``--with-clip``): a folder release points ``clip_checkpoint`` and
``model_config`` at its copies of the open_clip files; a one-file release
carries the text tower's tensors under :data:`TEXT_TOWER_PREFIX` and
records ``clip_checkpoint='from_weights'`` with the open_clip architecture
as data in ``model_config``; the re-ranker is then built untrained and
takes the tower when the weights load (:meth:`CLIPReranker.load_text_tower`,
called by the captioner), as the tokenizer comes with them.
"""
import math
from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor

from pcm_plugin.clip.clip_features import (
    caption_cosine,
    load_open_clip_text_model,
)
from pcm_plugin.clip.release_tower import (
    check_own_clip_config,
    untrained_clip,
)
from pcm_plugin.registry import MODELS

from .clip_image_encoder import FrozenCLIPModule
from .pcm_mixup import FROM_WEIGHTS

# The re-ranker's CLIP text tower in a one-file release's tensors.
TEXT_TOWER_PREFIX = 'clip_text_tower.'


def scored_lengths(ids: Tensor, eos_id: int) -> Tensor:
    """Tokens each beam's score counts: its words and its first EOS, or
    all T steps when it emitted none.

    Args:
        ids (Tensor): ``(B, W, T)`` beams without BOS, as
            :func:`~.beam_search.beam_search` returns them.
        eos_id (int): End-of-sentence token.

    Returns:
        Tensor: ``(B, W)`` long, in ``[1, T]``.
    """
    is_eos = ids == eos_id  # (B, W, T)
    first = is_eos.int().argmax(dim=-1)  # (B, W), 0 where there is none
    return torch.where(is_eos.any(dim=-1), first + 1,
                       torch.full_like(first, ids.size(-1)))


def fused_scores(log_probs: Tensor, lengths: Tensor, cosines: Tensor, *,
                 weight: float, length_penalty: float) -> Tensor:
    """``(1 - w) * log_probs / lengths ** a + w * cosines``.

    A candidate whose log-probability is not finite (the beam search found
    fewer than W, tiny vocabularies only) scores -inf whatever ``w``.

    Args:
        log_probs (Tensor): ``(B, W)`` summed log-probabilities.
        lengths (Tensor): ``(B, W)`` tokens they count (>= 1).
        cosines (Tensor): ``(B, W)`` image-caption cosines.
        weight (float): ``w`` in [0, 1].
        length_penalty (float): ``a`` >= 0.

    Returns:
        Tensor: ``(B, W)`` float32 scores.
    """
    log_probs = log_probs.float()
    norm = log_probs / lengths.float() ** length_penalty  # (B, W)
    fused = (1.0 - weight) * norm + weight * cosines.float()  # (B, W)
    return fused.masked_fill(~torch.isfinite(log_probs), -math.inf)


def check_fusion(weight: float, length_penalty: float) -> None:
    """Refuse a weight outside [0, 1] or a negative length penalty."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f'CLIPReranker: weight={weight} must be in [0, 1] '
                         '(0: the log-probability only, 1: CLIP only)')
    if length_penalty < 0:
        raise ValueError(f'CLIPReranker: length_penalty={length_penalty} '
                         'must be >= 0 (0: summed log-probability, 1: per '
                         'token)')


@MODELS.register_module()
class CLIPReranker(FrozenCLIPModule):
    """Picks one of a sample's W final beams by log-probability and CLIP.

    Set as ``model.reranker`` of :class:`~.captioner.PCMCaptioner`; off
    (None) by default. It costs, per image at test time, a beam search of
    width ``num_candidates`` instead of the decoder's ``beam_size`` and one
    text-tower forward per candidate caption (W per image).

    Args:
        clip_model (str): open_clip model name: the CLIP that extracted
            the features (its joint space is the ``global_feat``'s).
        weight (float): Fusion weight ``w`` in [0, 1], chosen on val
            (``tools/choose_rerank_weight.py``); no default on purpose.
        clip_checkpoint (str, optional): Its local weights, or
            ``'from_weights'`` (a one-file release's): the text tower
            comes with the model's weights (:meth:`load_text_tower`).
        model_config (str | dict, optional): A custom open_clip JSON
            config; with ``clip_checkpoint='from_weights'`` the open_clip
            model config itself (a dict: the architecture as data).
        pretrained (str, optional): A cached open_clip tag instead of
            ``clip_checkpoint``.
        num_candidates (int): W, the beams kept (the search's width).
            Defaults to 5.
        length_penalty (float): ``a``: the log-probability is divided by
            the beam's token count to this power. Defaults to 1.0 (mean
            per token).
        prompt (str): Text put in front of each candidate before the text
            tower, e.g. CLIPScore's ``'A photo depicts '``. Defaults to ''
            (the caption alone, as the feature store's training cosines).
    """

    def __init__(self, *, clip_model: str, weight: float,
                 clip_checkpoint: Optional[str] = None,
                 model_config: Optional[Union[str, dict]] = None,
                 pretrained: Optional[str] = None, num_candidates: int = 5,
                 length_penalty: float = 1.0, prompt: str = '') -> None:
        super().__init__()
        check_fusion(weight, length_penalty)
        if num_candidates < 1:
            raise ValueError('CLIPReranker: num_candidates='
                             f'{num_candidates} must be >= 1')
        import open_clip  # deferred: open_clip loads only where CLIP runs
        self.from_weights = clip_checkpoint == FROM_WEIGHTS
        if self.from_weights:
            check_own_clip_config(clip_model, model_config, 'model.reranker')
            clip = untrained_clip(clip_model, model_config)
            tokenizer = open_clip.get_tokenizer(clip_model)
        elif isinstance(model_config, dict):
            raise ValueError(
                'CLIPReranker: model_config as a dict (the architecture) '
                "is a one-file release's, with clip_checkpoint="
                f"'{FROM_WEIGHTS}'; give the path of the open_clip JSON")
        else:
            clip, tokenizer = load_open_clip_text_model(
                clip_model, clip_checkpoint, model_config,
                pretrained=pretrained)
        # What the tower was built from, for a one-file release.
        self.clip_config = open_clip.get_model_config(clip_model)
        clip.visual = None  # the image side is the stored global feature
        self.hold_tower(clip)  # out of checkpoints, frozen
        self.tower_loaded = not self.from_weights
        self.tokenizer = tokenizer
        with torch.no_grad():
            self.embed_dim = int(clip.encode_text(tokenizer([''])).size(-1))
        self.clip_name = clip_model
        self.weight, self.length_penalty = weight, length_penalty
        self.num_candidates, self.prompt = num_candidates, prompt

    def text_tower_state(self) -> Dict[str, Tensor]:
        """The text tower's tensors (copies), as a one-file release
        carries them (without :data:`TEXT_TOWER_PREFIX`)."""
        return {k: v.detach().clone().contiguous()
                for k, v in self.tower.state_dict().items()}

    def load_text_tower(self, tensors: Dict[str, Tensor]) -> None:
        """Take the text tower a one-file release carries, if this
        re-ranker was built for it (``clip_checkpoint='from_weights'``);
        one built from its own CLIP files keeps those.

        Args:
            tensors (dict): The tower's state dict (every key).

        Raises:
            RuntimeError: the tensors do not fit the tower's architecture.
        """
        if self.from_weights:
            self.tower.load_state_dict(tensors, strict=True)
            self.tower_loaded = True

    @torch.no_grad()
    def cosines(self, global_feat: Tensor,
                captions: Sequence[Sequence[str]]) -> Tensor:
        """cos(text tower of each candidate, its image's global feature).

        Args:
            global_feat (Tensor): ``(B, Dg)`` image embeddings.
            captions (Sequence): B lists of W candidate captions each.

        Returns:
            Tensor: ``(B, W)`` float32 on ``global_feat``'s device.

        Raises:
            RuntimeError: the tower comes with the weights
                (``'from_weights'``) and none were loaded.
        """
        if not self.tower_loaded:
            raise RuntimeError(
                f"CLIPReranker: clip_checkpoint='{FROM_WEIGHTS}', but the "
                'weights loaded carried no CLIP text tower: load a one-file '
                'release published --with-clip, or point model.reranker at '
                'the CLIP files (clip_checkpoint=...)')
        if global_feat.size(-1) != self.embed_dim:
            raise ValueError(
                f'CLIPReranker: the features are {global_feat.size(-1)}-d '
                f'but {self.clip_name} embeds text in {self.embed_dim}-d; '
                'use the CLIP that extracted the features')
        width = len(captions[0])
        texts = [self.prompt + c for caps in captions for c in caps]
        images = global_feat.repeat_interleave(width, dim=0)  # (B * W, Dg)
        cos = caption_cosine(self.tower, self.tokenizer, images,
                             texts)  # (B * W,)
        return cos.view(len(captions), width).to(global_feat.device)

    def forward(self, log_probs: Tensor, lengths: Tensor, cosines: Tensor,
                *, weight: Optional[float] = None,
                length_penalty: Optional[float] = None) -> Tensor:
        """Index of each sample's best candidate (the earlier on ties).

        Args:
            log_probs (Tensor): ``(B, W)`` summed log-probabilities.
            lengths (Tensor): ``(B, W)`` tokens they count.
            cosines (Tensor): ``(B, W)`` from :meth:`cosines`.
            weight (float, optional): Defaults to ``self.weight``.
            length_penalty (float, optional): Defaults to
                ``self.length_penalty``.

        Returns:
            Tensor: ``(B,)`` long.
        """
        weight = self.weight if weight is None else weight
        length_penalty = self.length_penalty if length_penalty is None \
            else length_penalty
        check_fusion(weight, length_penalty)
        return fused_scores(log_probs, lengths, cosines, weight=weight,
                            length_penalty=length_penalty).argmax(dim=-1)
