# Copyright (c) pcm_plugin authors. MIT licence.
"""Per-image official ``.npz`` features <-> the sharded feature store.

The official OpenAI-CLIP-Feature tool writes one ``<image_id>.npz`` per
image with ``features`` (N x Dv float32 patch tokens before ``ln_post``) and
``g_feature`` (1 x Dg float32 CLIP embedding); the PCM-Net loader reads a
synthetic image from ``<FEATS_FOLDER>_sp<split_id>/<image_id>.npz`` and a
real one from ``<FEATS_FOLDER>/<image_id>.npz`` (docs/method.md §2.2).

:func:`import_official_features` streams them into the store shard by
shard, on as many ranks as ``torchrun`` starts, with the plan, resume and
index rules of ``extraction.py`` (a shard is written only when all its
files were read; a rerun skips complete shards). The CLIP ran in fp16 on
the GPU before the tool cast to float32, so the values are fp16 numbers and
the fp16 store keeps them exactly; any value that is not is counted.
"""
import logging
import os
import os.path as osp
import time
import zipfile
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pcm_plugin.datasets.feature_store import (
    FeatureStore,
    shard_is_complete,
    write_shard,
)
from pcm_plugin.utils.fileio import (
    atomic_write_bytes,
    disk_full_error,
    remove_stale_temp_files,
)

from .caption_readers import load_json
from .extraction import (
    check_or_write_config,
    items_digest,
    merge_index,
    shard_name,
)
from .sharding import (
    barrier,
    dist_env,
    owned_by_rank,
    process_group,
    sum_across_ranks,
)

logger = logging.getLogger(__name__)


def official_feature_path(feats_folder: str, image_id: str,
                          split_id: Optional[int]) -> str:
    """Where the official loader reads an image's features."""
    folder = feats_folder if split_id is None else \
        f'{feats_folder}_sp{split_id}'
    return osp.join(folder, f'{image_id}.npz')


def feature_items(ann_file: str) -> List[Dict]:
    """Distinct images of an annotation file, in first-use order, each with
    its ``split_id`` (None for a real image)."""
    data = load_json(ann_file)
    entries = data.get('data_list') if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{ann_file}: no `data_list`; expected an '
                         'annotation file of tools/data/import_official.py')
    items, seen = [], {}
    for entry in entries:
        image_id = str(entry['image_id'])
        split = entry.get('split_id')
        if image_id in seen:
            if seen[image_id] != split:
                raise ValueError(f'{ann_file}: image {image_id} is given '
                                 f'split_id {seen[image_id]} and {split}')
            continue
        seen[image_id] = split
        # file_name/caption keep extraction.items_digest's row layout.
        items.append(dict(image_id=image_id, split_id=split, file_name=None,
                          caption=None))
    return items


def read_official_npz(path: str, image_id: str
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """``(features (N, Dv), g_feature (Dg,))`` of one official file.

    Raises:
        FileNotFoundError: The file is missing (names the image).
        ValueError: Truncated or damaged, or without the two arrays.
    """
    try:
        with np.load(path, allow_pickle=False) as content:
            patch, glob = content['features'], content['g_feature']
    except FileNotFoundError:
        raise FileNotFoundError(
            f'image {image_id}: {path} not found; extract its features with '
            'OpenAI-CLIP-Feature, or fix --feats-folder / its split_id') \
            from None
    except KeyError as err:
        raise ValueError(f'{path}: no {err} array; an OpenAI-CLIP-Feature '
                         'file has `features` and `g_feature`') from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError,
            OSError) as err:
        raise ValueError(f'{path}: truncated or damaged .npz ({err}); '
                         'extract this image again') from None
    return patch, glob.reshape(-1)


def _shard_arrays(items, feats_folder, shape) -> Tuple:
    """The shard's stacked fp16 arrays and how many files were inexact."""
    num, width, gdim = shape
    patch = np.empty((len(items), num, width), np.float16)
    glob = np.empty((len(items), gdim), np.float16)
    inexact = 0
    for row, item in enumerate(items):
        path = official_feature_path(feats_folder, item['image_id'],
                                     item['split_id'])
        p, g = read_official_npz(path, item['image_id'])
        p = p[:num]  # the official MAX_FEAT_NUM cut
        if p.shape != (num, width) or g.shape != (gdim,):
            raise ValueError(f'{path}: features {p.shape} / g_feature '
                             f'{g.shape}, but the store holds ({num}, '
                             f'{width}) / ({gdim},): mixed backbones?')
        patch[row], glob[row] = p, g
        inexact += not (np.array_equal(patch[row], p)
                        and np.array_equal(glob[row], g))
    return patch, glob, inexact


def import_official_features(ann_file: str, *, feats_folder: str,
                             out_dir: str, shard_size: int = 2048,
                             max_feat_num: Optional[int] = None) -> Dict:
    """This rank's missing shards from ``.npz`` files; rank 0 writes the
    index.

    Args:
        ann_file (str): An annotation file of this plugin whose synthetic
            entries carry their ``split_id`` (``import_official.py
            annotations`` or ``sync`` writes them).
        feats_folder (str): The official ``FEATS_FOLDER``: synthetic images
            are read from ``<feats_folder>_sp<k>``, real ones from it.
        out_dir (str): The feature store to write.
        shard_size (int): Images per shard (the resume unit).
        max_feat_num (int, optional): Keep the first rows only, as the
            official ``MAX_FEAT_NUM``. Defaults to all.

    Returns:
        dict: ``imported``, ``skipped_existing``, ``inexact_fp16``,
        ``seconds``, ``files_per_s``, ``num_items`` (rank 0).
    """
    start = time.time()
    rank, world, _ = dist_env()
    items = feature_items(ann_file)
    if not items:
        raise ValueError(f'{ann_file}: no entries')
    first = items[0]
    p, g = read_official_npz(official_feature_path(
        feats_folder, first['image_id'], first['split_id']),
        first['image_id'])
    num = min(len(p), max_feat_num or len(p))
    num_shards = -(-len(items) // shard_size)
    check_or_write_config(out_dir, dict(
        format='pcm_plugin.official_features/1',
        annotation=osp.realpath(ann_file), image_dir=osp.realpath(
            feats_folder), source='official .npz (OpenAI-CLIP-Feature)',
        num_entries=len(items), items_sha256=items_digest(items),
        shard_size=shard_size, num_shards=num_shards,
        patch_shape=[num, int(p.shape[1])], global_dim=int(g.shape[0])))
    mine = owned_by_rank(num_shards, rank, world)
    pending = [k for k in mine if not shard_is_complete(out_dir,
                                                        shard_name(k))]
    remove_stale_temp_files(out_dir, [f'{shard_name(k)}.{f}' for k in pending
                                      for f in ('patch.npy', 'global.npy',
                                                'ids.json')])
    imported = inexact = 0
    for k in pending:
        chunk = items[k * shard_size:(k + 1) * shard_size]
        patch, glob, bad = _shard_arrays(chunk, feats_folder,
                                         (num, p.shape[1], g.shape[0]))
        try:
            write_shard(out_dir, shard_name(k),
                        [i['image_id'] for i in chunk], patch, glob)
        except OSError as err:
            raise disk_full_error(err, out_dir, 'free space and rerun: '
                                  'complete shards are kept') from err
        imported, inexact = imported + len(chunk), inexact + bad
    done = sum(len(items[k * shard_size:(k + 1) * shard_size])
               for k in mine if k not in pending)
    with process_group(world):
        totals = sum_across_ranks([imported, done, inexact])
        barrier()
        index = merge_index(out_dir) if rank == 0 else None
        barrier()
    seconds = time.time() - start
    summary = dict(imported=int(totals[0]), skipped_existing=int(totals[1]),
                   inexact_fp16=int(totals[2]), seconds=round(seconds, 2),
                   world_size=world, out_dir=out_dir,
                   files_per_s=round(totals[0] / max(seconds, 1e-9), 1))
    if index is not None:
        summary['num_items'] = index['num_items']
    return summary


def export_official_features(store_dir: str, items: Sequence[Dict],
                             feats_folder: str) -> int:
    """Write images of a store as official ``.npz`` files (float32
    ``features`` (N, Dv) and ``g_feature`` (1, Dg)), each where the
    official loader reads it.

    Args:
        store_dir (str): The feature store.
        items (Sequence[dict]): ``image_id`` and ``split_id`` (None: a
            real image) of each image to write.
        feats_folder (str): The official ``FEATS_FOLDER``.

    Returns:
        int: The number of files written.
    """
    store = FeatureStore(store_dir)
    for item in items:
        feats = store.get(item['image_id'], dtype=np.float32)
        path = official_feature_path(feats_folder, item['image_id'],
                                     item['split_id'])
        os.makedirs(osp.dirname(path), exist_ok=True)
        atomic_write_bytes(path, lambda f, x=feats: np.savez_compressed(
            f, features=x['patch'], g_feature=x['global_feat'][None]))
    return len(items)


def storage_bytes(paths: Sequence[str]) -> int:
    """Total size of the regular files under ``paths`` (folders walked)."""
    total = 0
    for path in paths:
        for root, _, files in os.walk(path):
            total += sum(osp.getsize(osp.join(root, f)) for f in files)
    return total

