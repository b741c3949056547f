"""Diagnostics of a prepared mini world, independent of PCM-Net.

Three questions the ablation needs answered before reading its numbers:

* Do the CLIP cosines of the training pairs see the defects? (The
  CLIP-weighted loss can only down-weight pairs whose cosine is lower.)
* How much do the synthetic style and the defects cost a captioner that
  knows nothing but the features? A nearest-neighbour captioner (caption
  of the training image whose global feature is closest to the test
  image's) measured with CIDEr on the real test split, per training set.
* Does PCM's salient-patch selection land on the objects? For every
  (patch, concept) pair the mix-up selects on the real test renders, is
  the patch on an object, and on one that has the concept?
"""
import json
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np

from .world import load_world
from .world_steps import load_scenes


def _store_arrays(root: str, folder: str):
    from pcm_plugin.datasets.feature_store import FeatureStore
    store = FeatureStore(osp.join(root, folder))
    ids = store.ids
    items = [store.get(i) for i in ids]
    glob = np.stack([it['global_feat'] for it in items])  # (n, Dg)
    glob /= np.linalg.norm(glob, axis=1, keepdims=True)
    cos = np.array([it['clip_cos'] for it in items])  # (n,)
    return ids, glob, cos


def defect_cosines(root: str, name: str,
                   alpha: float = 2.5) -> Dict[str, Dict]:
    """CLIP cosine statistics of one synthetic set, by defect type.

    Args:
        root (str): World root (holding ``world.json``).
        name (str): A training set, e.g. ``'synth_d030'``.
        alpha (float): Scale of the CLIP-weighted loss whose mean sample
            weight is reported (``clip_sample_weights``). Defaults to 2.5.

    Returns:
        dict: ``{'clean'|<defect type>: {'n', 'mean', 'std', 'p10',
        'p90', 'weight'}}``.
    """
    import torch

    from pcm_plugin.models.losses.clip_weighted_ce import clip_sample_weights

    world = load_world(root)
    ids, _, cos = _store_arrays(root, world['features'][name])
    with open(osp.join(root, world['images'][name], 'defects.json'),
              encoding='utf-8') as f:
        defects = json.load(f)
    groups: Dict[str, List[float]] = {}
    for image_id, value in zip(ids, cos):
        kind = defects[image_id]['type'] if defects[image_id] else 'clean'
        groups.setdefault(kind, []).append(float(value))
    return {k: dict(n=len(v), mean=float(np.mean(v)), std=float(np.std(v)),
                    p10=float(np.percentile(v, 10)),
                    p90=float(np.percentile(v, 90)),
                    weight=float(clip_sample_weights(
                        torch.tensor(v), alpha=alpha).mean()))
            for k, v in sorted(groups.items())}


def synthetic_sets(root: str) -> List[str]:
    """Names of the world's synthetic training sets (``synth_dXXX``)."""
    return sorted(k for k in load_world(root)['features']
                  if k.startswith('synth_'))


def nearest_neighbour_cider(root: str) -> Dict[str, float]:
    """CIDEr of nearest-neighbour captioning from every training set.

    Returns:
        dict: training set name -> CIDEr (×100, the metric's scale) on
        the real test split.
    """
    from pycocoevalcap.cider.cider import Cider

    from pcm_plugin.evaluation.caption_metric import PAPER_SCALE
    world = load_world(root)
    with open(osp.join(root, world['annotations']['train']),
              encoding='utf-8') as f:
        captions = {e['image_id']: e['caption']
                    for e in json.load(f)['data_list']}
    with open(osp.join(root, world['annotations']['test']),
              encoding='utf-8') as f:
        refs = {e['image_id']: e['captions']
                for e in json.load(f)['data_list']}
    test_ids, test_glob, _ = _store_arrays(root, world['features']['test'])
    scores = {}
    for name, folder in world['features'].items():
        if name in ('val', 'test'):
            continue
        ids, glob, _ = _store_arrays(root, folder)
        nearest = (test_glob @ glob.T).argmax(1)  # (n_test,)
        preds = {t: [captions[ids[j]]] for t, j in zip(test_ids, nearest)}
        gts = {t: refs[t] for t in test_ids}
        scores[name] = float(Cider().compute_score(gts, preds)[0]
                             * PAPER_SCALE)
    return scores


def mixup_localisation(root: str, split: str = 'test', *, top_k: int = 5,
                       top_m: float = 5, temperature: float = 0.01,
                       min_cover: float = 0.25, selection: str = 'official',
                       excluded_words: Sequence[str] = ()
                       ) -> Dict[str, Dict]:
    """Where the mix-up's selected (patch, concept) pairs land.

    Runs PCM-Net's own selection
    (:func:`pcm_plugin.models.mixup_selection.select_pairs`) with the
    world's frozen CLIP head and concept bank on a split's real renders,
    whose object masks are known exactly.

    Args:
        root (str): World root.
        split (str): ``'test'`` or ``'val'``.
        top_k, top_m, temperature: The mix-up's settings (configs: 5, 5,
            0.01).
        min_cover (float): A patch is "on" an object when the object covers
            at least this fraction of it.
        selection (str): The mix-up's selection rule, ``'official'`` (the
            official code's top-M pairs) or ``'per_concept'``
            (``PCMMixup(selection=...)``).
        excluded_words (Sequence[str]): Words retrieved but never written
            (``PCMMixup(excluded_words=...)``, e.g. the world's
            backgrounds). Defaults to none.

    Returns:
        dict: :func:`~.localisation.localisation_stats`.
    """
    import torch

    from pcm_plugin.datasets.feature_store import FeatureStore
    from pcm_plugin.models.clip_head import FrozenCLIPHead
    from pcm_plugin.models.concept_bank import load_concept_bank
    from pcm_plugin.models.mixup_selection import (
        select_pairs,
        writable_concepts,
    )

    from .localisation import localisation_stats

    world = load_world(root)
    scenes = load_scenes(osp.join(root, 'corpus'), split)
    store = FeatureStore(osp.join(root, world['features'][split]))
    items = [store.get(i) for i in scenes]
    patches = torch.from_numpy(np.stack(
        [it['patch'] for it in items])).float()  # (n, N, Dv)
    glob = torch.from_numpy(np.stack(
        [it['global_feat'] for it in items])).float()  # (n, Dg)
    words, embeds, _ = load_concept_bank(osp.join(root,
                                                  world['concept_bank']))
    head = FrozenCLIPHead(patch_dim=patches.shape[-1],
                          global_dim=glob.shape[-1])
    head.load_from_file(osp.join(root, world['clip']['checkpoint']))
    with torch.no_grad():
        patch_proj = head(patches)  # (n, N, Dg)
    writable = (writable_concepts(words, excluded_words) if excluded_words
                else None)  # (C,) bool
    concept_idx, pair_idx, pair_ok = select_pairs(
        patch_proj, glob, torch.from_numpy(embeds).float(), top_k=top_k,
        top_m=top_m, temperature=temperature, selection=selection,
        writable=writable)
    return localisation_stats(list(scenes.values()), words, concept_idx,
                              pair_idx, pair_ok,
                              num_patches=patches.shape[1],
                              min_cover=min_cover)
