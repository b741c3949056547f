"""CLIPScore and RefCLIPScore (Hessel et al., EMNLP 2021), reference-free
caption quality from a contrastive image/text model.

``CLIP-S(c, v) = w * max(cos(E_T(c), E_I(v)), 0)`` with ``w = 2.5``, and
``RefCLIP-S(c, R, v) = H-Mean(CLIP-S(c, v), max(max_r cos(E_T(c),
E_T(r)), 0))``. Captions are embedded with the prompt ``'A photo depicts '``
in front, as in the paper. The image embedding is the test features' own
``global_feat``, i.e. the projected embedding of the CLIP that extracted
them, so the metric's ``clip_model`` must be that CLIP (checked by width).

The metric reports both ×100, as the caption metrics beside it
(:data:`~.caption_metric.PAPER_SCALE`): the paper's own tables give
correlations, not scores, and its code prints CLIP-S on its 0..2.5 scale
next to pycocoevalcap's 0..1 BLEU and CIDEr, saying to report it like the
other metrics; captioning papers then print it ×100 (``w = 2.5`` gives
0..250). :func:`clip_score` keeps the formula's own scale.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from pcm_plugin.clip.clip_features import load_open_clip_text_model
from pcm_plugin.registry import METRICS

from .caption_metric import PAPER_SCALE
from .coco_gt import load_coco_gt, to_image_id

PROMPT = 'A photo depicts '


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor,
               weight: float = 2.5) -> torch.Tensor:
    """``weight * max(cos, 0)`` row by row.

    Args:
        image_emb (Tensor): (B, Dg) image embeddings (any norm).
        text_emb (Tensor): (B, Dg) candidate caption embeddings.
        weight (float): ``w``. Defaults to 2.5.

    Returns:
        Tensor: (B,) scores in ``[0, weight]``.
    """
    cos = F.cosine_similarity(image_emb.float(), text_emb.float(), dim=-1)
    return weight * cos.clamp(min=0)  # (B,)


def ref_clip_score(clip_s: torch.Tensor, text_emb: torch.Tensor,
                   ref_embs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Harmonic mean of CLIP-S and the best reference cosine (floored at 0).

    Args:
        clip_s (Tensor): (B,) CLIP-S of the candidates.
        text_emb (Tensor): (B, Dg) candidate embeddings.
        ref_embs (Sequence[Tensor]): B tensors, each image's reference
            embeddings (one row of width Dg per reference).

    Returns:
        Tensor: (B,) RefCLIP-S (0 where either term is 0).
    """
    best = torch.stack([
        F.cosine_similarity(text_emb[b:b + 1].float(), refs.float(),
                            dim=-1).max() for b, refs in enumerate(ref_embs)
    ]).clamp(min=0)  # (B,)
    total = clip_s + best
    return torch.where(total > 0, 2 * clip_s * best / total.clamp(min=1e-12),
                       torch.zeros_like(total))


@METRICS.register_module()
class CLIPScoreMetric(BaseMetric):
    """CLIPScore (and RefCLIPScore with references) of predicted captions.

    Use it beside ``COCOCaptionMetric``, e.g. ``val_evaluator = [dict(
    type='COCOCaptionMetric', ann_file=...), dict(type='CLIPScoreMetric',
    clip_model='ViT-B-32', clip_checkpoint='data/clip/ViT-B-32.pt',
    ann_file=...)]``.

    Args:
        clip_model (str): open_clip model name; must be the CLIP whose
            global features the test set holds.
        clip_checkpoint (str, optional): Its local weights.
        model_config (str, optional): A custom open_clip JSON config.
        pretrained (str, optional): A cached open_clip tag instead.
        ann_file (str, optional): COCO-format references: adds
            ``RefCLIPScore``. Defaults to None.
        weight (float): ``w`` of CLIP-S. Defaults to 2.5.
        batch_size (int): Captions per text-tower batch. Defaults to 256.
        collect_device (str): Where ranks gather results. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the output keys.
        scale (float): Factor on both scores. Defaults to
            :data:`PAPER_SCALE` (100, the caption metrics' scale); 1 gives
            the official code's numbers.
    """
    default_prefix: Optional[str] = None

    def __init__(self, *, clip_model: str,
                 clip_checkpoint: Optional[str] = None,
                 model_config: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 ann_file: Optional[str] = None, weight: float = 2.5,
                 batch_size: int = 256, collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 scale: float = PAPER_SCALE) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.clip, self.tokenizer = load_open_clip_text_model(
            clip_model, clip_checkpoint, model_config, pretrained=pretrained)
        self.clip_name = clip_model
        self.references = load_coco_gt(ann_file) if ann_file else None
        self.weight, self.batch_size = weight, batch_size
        self.scale = scale

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Keep each prediction with its image embedding."""
        image_embs = _global_feats(data_batch)  # (B, Dg)
        for sample, emb in zip(data_samples, image_embs):
            caption = sample.get('pred_caption')
            if caption is None:
                raise KeyError('data sample has no `pred_caption`')
            self.results.append(dict(
                image_id=to_image_id(sample.get('image_id'),
                                     where='CLIPScoreMetric.process'),
                caption=caption, image_emb=emb.float().cpu()))

    @torch.no_grad()
    def embed_texts(self, texts: List[str]) -> torch.Tensor:
        """(len(texts), D) text embeddings, with the paper's prompt."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [PROMPT + t for t in texts[start:start + self.batch_size]]
            out.append(self.clip.encode_text(self.tokenizer(chunk)).float())
        return torch.cat(out) if out else torch.zeros(0, 0)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Mean CLIP-S (and RefCLIP-S) over the distinct images, times
        ``scale``."""
        first = {}
        for result in results:
            first.setdefault(result['image_id'], result)
        ids = sorted(first)
        image_emb = torch.stack([first[i]['image_emb'] for i in ids])
        text_emb = self.embed_texts([first[i]['caption'] for i in ids])
        if image_emb.shape[1] != text_emb.shape[1]:
            raise ValueError(
                f'CLIPScoreMetric: the test features are '
                f'{image_emb.shape[1]}-d but {self.clip_name} embeds text '
                f'in {text_emb.shape[1]}-d; use the CLIP that extracted the '
                'features')
        clip_s = clip_score(image_emb, text_emb, self.weight)  # (B,)
        metrics = dict(CLIPScore=clip_s.mean().item() * self.scale)
        if self.references is not None:
            missing = [i for i in ids if i not in self.references]
            if missing:
                raise KeyError(f'CLIPScoreMetric: images {missing[:3]} have '
                               'no references in ann_file')
            refs = [self.embed_texts(list(self.references[i])) for i in ids]
            metrics['RefCLIPScore'] = ref_clip_score(
                clip_s, text_emb, refs).mean().item() * self.scale
        return metrics


def _global_feats(data_batch) -> torch.Tensor:
    """``global_feat`` of a collated batch (dict or list of samples)."""
    inputs = data_batch['inputs'] if isinstance(data_batch, dict) else None
    if isinstance(inputs, dict) and 'global_feat' in inputs:
        return torch.as_tensor(inputs['global_feat'])  # (B, Dg)
    if isinstance(inputs, (list, tuple)):
        return torch.stack([torch.as_tensor(i['global_feat'])
                            for i in inputs])
    raise KeyError('CLIPScoreMetric needs the batch\'s inputs.global_feat '
                   '(the CLIP image embedding of each test image)')
