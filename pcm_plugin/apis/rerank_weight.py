"""Choosing the CLIP re-ranker's fusion weight on the val split.

The re-ranker (:class:`~pcm_plugin.models.clip_reranker.CLIPReranker`)
returns, of a sample's W final beams, the one with the highest
``(1 - w) * log p / n ** a + w * cos``. Here ``w`` (and the length
penalty ``a``) are chosen on the val split, never on test:

1. the val split is decoded once, keeping every image's W beams with
   their summed log-probabilities, token counts and CLIP cosines;
2. each candidate's CIDEr is computed once: the candidates and the
   references go through one PTB tokenizer run, then W CIDEr passes score
   the k-th candidates of all images (the per-image CIDEr-D of a caption
   depends on its image's references and the references' document
   frequencies only, not on the other images' captions);
3. every point of the grid re-scores the cached numbers: its CIDEr is the
   mean of its picks' per-image CIDEr, which is the caption metric's
   CIDEr of those captions to the bit (tested), without decoding or
   scoring again.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from pcm_plugin.engine.config_input import read_config
from pcm_plugin.evaluation.caption_metric import PAPER_SCALE, ptb_tokenize
from pcm_plugin.evaluation.cider import FastCider
from pcm_plugin.evaluation.coco_gt import (
    References,
    load_coco_gt,
    to_image_id,
)
from pcm_plugin.models.clip_reranker import check_fusion, fused_scores
from pcm_plugin.utils.progress import progress_bar

from .inferencer import build_captioner
from .release import names_a_release, resolve_release

# w from 0 (log-probability only) to 1 (CLIP only) by 0.05.
DEFAULT_WEIGHTS = tuple(i / 20 for i in range(21))
# a = 0: the beam search's own score; a = 1: per token.
DEFAULT_LENGTH_PENALTIES = (0.0, 1.0)


def decode_candidates(model, loader) -> Dict:
    """Every image's final beams, with what the re-ranker scores them by.

    Args:
        model (PCMCaptioner): With a ``reranker``, in eval mode.
        loader (Iterable): Batches as a test dataloader yields them.

    Returns:
        dict: ``image_ids`` (B, sorted ints, each once: the first sample
        of an id wins, as in the caption metric), ``captions`` (B lists of
        W), ``log_probs``, ``lengths``, ``cosines`` (B, W) CPU tensors.
    """
    found = {}
    for batch in progress_bar(loader, desc='val candidates'):
        data = model.data_preprocessor(batch, False)
        out = model.caption_candidates(data['inputs'])
        for row, sample in enumerate(data['data_samples']):
            image_id = to_image_id(sample.get('image_id'),
                                   where='decode_candidates')
            found.setdefault(image_id, dict(
                caption=out['captions'][row],
                **{key: out[key][row].cpu()
                   for key in ('log_probs', 'lengths', 'cosines')}))
    ids = sorted(found)
    if not ids:
        raise ValueError('decode_candidates: the val loader yielded nothing')
    return dict(image_ids=ids,
                captions=[found[i]['caption'] for i in ids],
                **{key: torch.stack([found[i][key] for i in ids])
                   for key in ('log_probs', 'lengths', 'cosines')})


def candidate_cider(image_ids: Sequence[int],
                    captions: Sequence[Sequence[str]],
                    references: References) -> np.ndarray:
    """pycocoevalcap's per-image CIDEr of every candidate.

    Args:
        image_ids (Sequence[int]): B images, in the order to score them.
        captions (Sequence): B lists of W candidates.
        references (dict): Image id to its reference captions.

    Returns:
        np.ndarray: ``(B, W)`` float64, on pycocoevalcap's scale (1 =
        100 CIDEr).
    """
    missing = [i for i in image_ids if not references.get(i)]
    if missing:
        raise ValueError(f'{len(missing)} val images have no references, '
                         f'e.g. {missing[:5]}: is the gt file val\'s?')
    width = len(captions[0])
    tokenized = ptb_tokenize({
        **{('ref', i): references[i] for i in image_ids},
        **{('cand', i): list(caps) for i, caps in zip(image_ids, captions)}
    })
    gts = {i: tokenized[('ref', i)] for i in image_ids}
    columns = [FastCider().compute_score(
        gts, {i: [tokenized[('cand', i)][k]] for i in image_ids})[1]
        for k in range(width)]  # W arrays of (B,)
    return np.stack(columns, axis=1)  # (B, W)


def fusion_grid(candidates: Dict, cider: np.ndarray, *,
                weights: Sequence[float] = DEFAULT_WEIGHTS,
                length_penalties: Sequence[float] = DEFAULT_LENGTH_PENALTIES,
                scale: float = PAPER_SCALE) -> List[Dict]:
    """Val CIDEr of the re-ranker's picks at every (w, a) of the grid.

    Args:
        candidates (dict): From :func:`decode_candidates`.
        cider (np.ndarray): ``(B, W)`` from :func:`candidate_cider`.
        weights (Sequence[float]): Values of ``w`` in [0, 1].
        length_penalties (Sequence[float]): Values of ``a`` >= 0.
        scale (float): Factor on CIDEr. Defaults to 100 (as the metric).

    Returns:
        list[dict]: One row per point, ``a`` outer and ``w`` inner:
        ``weight``, ``length_penalty``, ``CIDEr``, ``mean_cos`` (the
        picks' mean CLIP cosine) and ``changed`` (share of images whose
        pick is not the first beam).
    """
    rows = np.arange(cider.shape[0])
    table = []
    for penalty in length_penalties:
        for weight in weights:
            check_fusion(weight, penalty)
            pick = fused_scores(
                candidates['log_probs'], candidates['lengths'],
                candidates['cosines'], weight=weight,
                length_penalty=penalty).argmax(dim=-1)  # (B,)
            chosen = pick.numpy()
            # np.mean over the images in order: the metric's own mean.
            table.append(dict(
                weight=float(weight), length_penalty=float(penalty),
                CIDEr=float(np.mean(cider[rows, chosen])) * scale,
                mean_cos=float(candidates['cosines'].gather(
                    1, pick[:, None]).mean()),
                changed=float((pick != 0).float().mean())))
    return table


def best_row(table: Sequence[Dict]) -> Dict:
    """The row with the highest CIDEr; ties go to the earlier row (the
    smaller ``w`` at the first length penalty listed)."""
    best = table[0]
    for row in table[1:]:
        if row['CIDEr'] > best['CIDEr']:
            best = row
    return best


def val_split(cfg: Config, *, val_ann: Optional[str] = None,
              val_features: Optional[str] = None,
              val_gt: Optional[str] = None,
              batch_size: Optional[int] = None) -> tuple:
    """The val loader config and its references' file.

    A config without a val loader (the mini world's ablation cells test
    only) lends its test loader's settings, pointed at ``val_ann`` and
    ``val_features``. Refuses any of the test split's files.

    Returns:
        tuple: ``(loader_cfg, gt_file)``.
    """
    source = cfg.get('val_dataloader')
    if not source and None in (val_ann, val_features, val_gt):
        raise ValueError('the config has no val_dataloader: give the val '
                         'split\'s annotation file, feature store and gt '
                         'file (--val-ann, --val-features, --val-gt)')
    loader = copy.deepcopy(source or cfg.test_dataloader)
    dataset = loader.dataset
    if val_ann is not None:
        dataset.ann_file = val_ann
    if val_features is not None:
        dataset.feature_dir = val_features
    if batch_size is not None:
        loader.batch_size = batch_size
    loader.sampler = dict(type='DefaultSampler', shuffle=False)
    gt_file = val_gt or _evaluator_gt(cfg.get('val_evaluator'))
    if gt_file is None:
        raise ValueError('no val references: give --val-gt (COCO-format '
                         'caption gt of the val split)')
    test_files = {osp.abspath(f) for f in (
        cfg.test_dataloader.dataset.get('ann_file'),
        _evaluator_gt(cfg.get('test_evaluator'))) if f}
    for name, path in (('annotation', dataset.ann_file), ('gt', gt_file)):
        if osp.abspath(path) in test_files:
            raise ValueError(f'the {name} file {path} is the test split\'s: '
                             'the fusion weight is chosen on val, never on '
                             'test')
    return loader, gt_file


def _evaluator_gt(evaluator) -> Optional[str]:
    """The ``ann_file`` of an evaluator config (or of the first of a list
    that has one)."""
    for item in (evaluator if isinstance(evaluator, (list, tuple))
                 else [evaluator]):
        if isinstance(item, dict) and item.get('ann_file'):
            return item['ann_file']
    return None


def reranker_config(cfg: Config, **settings) -> Dict:
    """``model.reranker`` of ``cfg``, or a ``CLIPReranker`` on the config's
    ``clip_model`` (the CLIP that extracted the features), updated with
    ``settings``."""
    reranker = copy.deepcopy(cfg.model.get('reranker'))
    if not reranker:
        clip = cfg.get('clip_model') or {}
        if clip.get('checkpoint') == 'from_weights':
            raise ValueError(
                'this one-file release carries no CLIP text tower (it was '
                'published without a re-ranker): choose on the training '
                'config and checkpoint, or on a release published with '
                'model.reranker on and --with-clip')
        if not clip.get('name'):
            raise ValueError('which CLIP extracted the features? Set '
                             '`clip_model = dict(name=..., checkpoint=...)` '
                             'in the config, or model.reranker')
        reranker = dict(type='CLIPReranker', clip_model=clip['name'],
                        clip_checkpoint=clip.get('checkpoint'),
                        model_config=clip.get('model_config'))
    reranker.update({k: v for k, v in settings.items() if v is not None})
    return dict(reranker)


def choose_rerank_weight(
        config: Union[str, Config], checkpoint: Optional[str] = None, *,
        val_ann: Optional[str] = None, val_features: Optional[str] = None,
        val_gt: Optional[str] = None,
        num_candidates: Optional[int] = None, prompt: Optional[str] = None,
        weights: Sequence[float] = DEFAULT_WEIGHTS,
        length_penalties: Sequence[float] = DEFAULT_LENGTH_PENALTIES,
        batch_size: Optional[int] = None, device: str = 'cpu') -> Dict:
    """Decode val once and pick the fusion weight with the best val CIDEr.

    Args:
        config (str | Config): The trained model's config (e.g. a run's
            dump), or a release (a folder or one ``.safetensors`` file,
            re-ranking already or not).
        checkpoint (str, optional): Its checkpoint; a release's own
            weights when omitted.
        val_ann, val_features, val_gt (str, optional): The val split's
            annotation file, feature store and COCO-format gt, where the
            config has no val loader/evaluator (or to override them).
        num_candidates (int, optional): W. Defaults to the config's
            reranker's, else ``CLIPReranker``'s.
        prompt (str, optional): Text before each candidate for CLIP.
        weights (Sequence[float]): The ``w`` grid.
        length_penalties (Sequence[float]): The ``a`` grid.
        batch_size (int, optional): Val batch size.
        device (str): Torch device. Defaults to 'cpu'.

    Returns:
        dict: ``weight``, ``length_penalty``, ``CIDEr`` (val, ×100) of the
        best point, ``num_candidates``, ``reranker`` (the config to test
        with), ``cfg_options`` (what ``tools/test.py`` needs to test with
        it: the whole re-ranker, or only the settings that changed where
        the model re-ranks already), ``grid`` (every row of
        :func:`fusion_grid`) and ``val_gt``.
    """
    if names_a_release(config):
        config, released = resolve_release(config)
        checkpoint = checkpoint or released
    cfg = config if isinstance(config, Config) else read_config(config)
    own = copy.deepcopy(cfg.model.get('reranker'))
    reranker = reranker_config(cfg, weight=0.0, prompt=prompt,
                               num_candidates=num_candidates)
    loader_cfg, gt_file = val_split(cfg, val_ann=val_ann,
                                    val_features=val_features,
                                    val_gt=val_gt, batch_size=batch_size)
    cfg.model.reranker = reranker
    model, _ = build_captioner(cfg, checkpoint)
    model.to(device)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(loader_cfg)
    candidates = decode_candidates(model, loader)
    cider = candidate_cider(candidates['image_ids'], candidates['captions'],
                            load_coco_gt(gt_file))
    grid = fusion_grid(candidates, cider, weights=weights,
                       length_penalties=length_penalties)
    best = best_row(grid)
    reranker.update(weight=best['weight'],
                    length_penalty=best['length_penalty'],
                    num_candidates=model.reranker.num_candidates)
    return dict(best, num_candidates=model.reranker.num_candidates,
                reranker=reranker, cfg_options=cfg_options(reranker, own),
                grid=grid, val_gt=gt_file)


def cfg_options(reranker: Dict, own: Optional[Dict] = None) -> List[str]:
    """``--cfg-options`` items that switch ``reranker`` on in
    ``tools/test.py`` (None values left out), or, where the model has a
    re-ranker of its own (``own``), the items that change it (a one-file
    release's re-ranker holds its CLIP's architecture as a dict, which
    is no command-line value)."""
    return [f'model.reranker.{key}={value}'
            for key, value in reranker.items()
            if value is not None and value != ''
            and not (own and own.get(key) == value)]
