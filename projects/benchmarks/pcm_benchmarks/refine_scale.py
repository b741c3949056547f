"""What SynC re-pairing costs at scale
(projects/benchmarks/tools/benchmark_refine.py).

A pool of N captions (from a small grammar) with random unit 512-d image
embeddings (the width of ViT-B/32's) is refined by the real pipeline; the
CLIP text tower is a toy one of embedding width 512, the sentence encoder
the real all-MiniLM-L6-v2 where installed. The report's per-phase seconds
give the projection to the 542,401 captions of COCO: caption embedding and
scoring grow with N, the exhaustive neighbour search with N².
"""
import itertools
import json
import os.path as osp
from typing import Dict, List

import numpy as np

COCO_SYNTHETIC = 542_401  # captions (and images) of PCM-Net's COCO set

_SUBJECTS = ('a man', 'a woman', 'a child', 'two dogs', 'a cat', 'a group of '
             'people', 'a bus', 'a train', 'a bird', 'an old car')
_VERBS = ('standing', 'sitting', 'running', 'parked', 'waiting', 'playing',
          'resting', 'walking')
_PLACES = ('on a street', 'in a field', 'near the water', 'in a kitchen',
           'on a beach', 'under a tree', 'in the snow', 'by a building')
_EXTRAS = ('', ' at night', ' on a sunny day', ' with a red umbrella',
           ' next to a bench', ' in the rain')


def grammar_captions(num: int, seed: int = 0) -> List[str]:
    """``num`` captions, cycling a shuffled 3,840-sentence grammar."""
    combos = list(itertools.product(_SUBJECTS, _VERBS, _PLACES, _EXTRAS))
    order = np.random.default_rng(seed).permutation(len(combos))
    return ['{} {} {}{}'.format(*combos[order[i % len(combos)]])
            for i in range(num)]


def write_scale_pool(root: str, num: int, *, clip_checkpoint: str,
                     seed: int = 0) -> Dict[str, str]:
    """A train annotation of ``num`` captions and a store of random unit
    512-d image embeddings (patch tokens of size 1 x 8: not read)."""
    from pcm_plugin.datasets.feature_store import write_feature_store
    from pcm_plugin.utils.fileio import atomic_write_json, file_sha256
    ids = [str(6_000_000 + i) for i in range(num)]
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((num, 512)).astype(np.float32)
    store = osp.join(root, 'store')
    write_feature_store(
        store, ids, np.zeros((num, 1, 8), np.float16), feats,
        shard_size=65536, meta=dict(
            clip_model='pcm-tiny-embed512', clip_checkpoint=clip_checkpoint,
            checkpoint_sha256=file_sha256(clip_checkpoint)))
    ann = osp.join(root, 'train.json')
    atomic_write_json(ann, dict(metainfo=dict(split='train'), data_list=[
        dict(image_id=i, caption=c)
        for i, c in zip(ids, grammar_captions(num, seed))]))
    return dict(ann=ann, store=store)


def project(report: Dict, num: int, target: int = COCO_SYNTHETIC) -> Dict:
    """Seconds at ``target`` captions from the measured phases.

    Embedding, scoring and writing grow linearly with N, the exhaustive
    neighbour search quadratically (every caption against every image).
    """
    ratio = target / num
    phases = report['seconds_rank0']
    linear = phases['embed'] + phases['score_and_write']
    return dict(target=target, embed_and_score_s=round(linear * ratio, 1),
                search_s=round(phases['search'] * ratio ** 2, 1),
                total_s=round(linear * ratio + phases['search'] * ratio ** 2,
                              1),
                formula=(f'T(N) = {linear / num:.3e} * N + '
                         f'{phases["search"] / num ** 2:.3e} * N^2 seconds '
                         '(this machine, one process)'))


def write_json(path: str, obj) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=1)
