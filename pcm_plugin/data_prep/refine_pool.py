"""The captions and images a SynC refinement works on (its input side).

:func:`load_pool` reads a train annotation file and the feature stores of
its images; the image embeddings are the stores' global features (the
projected CLIP image embedding), L2-normalised. Missing or non-finite
features stop the run with the ids named, or are dropped and counted with
``skip_bad``; :func:`check_pool` refuses pools SynC cannot work on.
"""
import json
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pcm_plugin.datasets.feature_store import FeatureStore

from .bad_input import BadInputError, BadInputPolicy


@dataclass
class Pool:
    """The captions and the images they can be paired with.

    ``entries[i]`` is caption i's annotation entry; ``own[i]`` the index of
    its own image in ``image_ids``; ``stores[m]`` the feature store of
    image m.
    """
    entries: List[Dict]
    own: np.ndarray
    image_ids: List[str]
    stores: List[str]
    images: torch.Tensor  # (M, d) unit rows
    policy: BadInputPolicy

    @property
    def captions(self) -> List[str]:
        return [str(e['caption']) for e in self.entries]


def _reject(policy: BadInputPolicy, kind: str, bad: Sequence[str],
            total: int, what: str, hint: str) -> None:
    """One error naming a few examples, or a counted skip."""
    if not bad:
        return
    if not policy.skip_bad:
        raise BadInputError(f'{len(bad)} of {total} {what} (e.g. '
                            f'{list(bad)[:3]}); {hint}, or pass --skip-bad '
                            'to drop and count them')
    policy.counts[kind] += len(bad)


def load_pool(ann_file: str, feature_dirs: Sequence[str], *,
              skip_bad: bool = False) -> Pool:
    """Captions of ``ann_file`` and their images' unit CLIP embeddings.

    An image id is looked up in ``feature_dirs`` in order (the first store
    holding it wins), so one refinement can span several stores.
    """
    with open(ann_file, encoding='utf-8') as f:
        try:
            entries = json.load(f)['data_list']
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f'{ann_file} is not an annotation file with a '
                             f'`data_list` ({err})') from None
    policy = BadInputPolicy(skip_bad=skip_bad)
    lacking = [str(e) for e in entries if 'image_id' not in e or
               not str(e.get('caption') or '').strip()]
    if lacking:
        raise BadInputError(f'{ann_file}: {len(lacking)} entries lack '
                            f'`image_id` or `caption` (e.g. {lacking[0]}); '
                            'refine a train annotation file')
    stores = [FeatureStore(d) for d in feature_dirs]
    where = {}
    for entry in entries:
        image_id = str(entry['image_id'])
        if image_id not in where:
            where[image_id] = next(
                (s for s, store in enumerate(stores) if image_id in store),
                None)
    missing = [i for i, s in where.items() if s is None]
    _reject(policy, 'image without features', missing, len(where),
            f'images of {ann_file} have no features in {list(feature_dirs)}',
            'extract them with tools/extract_features.py')
    image_ids = [i for i, s in where.items() if s is not None]
    feats = np.zeros((len(image_ids), stores[0].global_dim), np.float32)
    for s, store in enumerate(stores):
        mine = [m for m, i in enumerate(image_ids) if where[i] == s]
        feats[mine] = store.global_feats([image_ids[m] for m in mine])
    finite = np.isfinite(feats).all(axis=1)  # (M,)
    _reject(policy, 'non-finite image features',
            [image_ids[m] for m in np.flatnonzero(~finite)], len(image_ids),
            'images have NaN/Inf global features',
            're-extract them with tools/extract_features.py')
    image_ids = [i for i, ok in zip(image_ids, finite) if ok]
    index = {i: m for m, i in enumerate(image_ids)}
    kept = [e for e in entries if str(e['image_id']) in index]
    own = np.array([index[str(e['image_id'])] for e in kept], np.int64)
    images = F.normalize(torch.from_numpy(feats[finite]), dim=-1)  # (M, d)
    return Pool(entries=kept, own=own, image_ids=image_ids,
                stores=[feature_dirs[where[i]] for i in image_ids],
                images=images, policy=policy)


def check_pool(pool: Pool, *, k: int, k_back: int) -> None:
    """Refuse pools SynC cannot work on, naming the setting to change."""
    num_images, num_captions = len(pool.image_ids), len(pool.entries)
    if num_images < 2:
        raise BadInputError(f'the pool has {num_images} image(s): nothing '
                            'to re-pair; refine a whole training set')
    if k > num_images:
        raise BadInputError(f'--k {k} is larger than the pool of '
                            f'{num_images} images; lower --k')
    if k_back > num_captions:
        raise BadInputError(f'--k-back {k_back} is larger than the '
                            f'{num_captions} captions; lower --k-back')
