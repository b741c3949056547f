"""Diagnostics of a prepared mini world, independent of PCM-Net.

Two questions the ablation needs answered before reading its numbers:

* Do the CLIP cosines of the training pairs see the defects? (The
  CLIP-weighted loss can only down-weight pairs whose cosine is lower.)
* How much do the synthetic style and the defects cost a captioner that
  knows nothing but the features? A nearest-neighbour captioner (caption
  of the training image whose global feature is closest to the test
  image's) measured with CIDEr on the real test split, per training set.
"""
import json
import os.path as osp
from typing import Dict, List

import numpy as np


def _load_world(root: str) -> Dict:
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found; prepare the world with '
                                '`python tools/mini_world/prepare.py`')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


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

    world = _load_world(root)
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
    return sorted(k for k in _load_world(root)['features']
                  if k.startswith('synth_'))


def nearest_neighbour_cider(root: str) -> Dict[str, float]:
    """CIDEr of nearest-neighbour captioning from every training set.

    Returns:
        dict: training set name -> CIDEr (x100) on the real test split.
    """
    from pycocoevalcap.cider.cider import Cider
    world = _load_world(root)
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
        scores[name] = float(Cider().compute_score(gts, preds)[0] * 100)
    return scores
