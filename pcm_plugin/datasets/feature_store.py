"""Sharded, memory-mapped store of precomputed CLIP features.

One ``.npz`` per image (the official layout) means hundreds of thousands of
small files and a ``zip`` parse per sample; here features live in a few large
fp16 ``.npy`` shards read with ``mmap_mode='r'``, so a sample is two slices
and the page cache does the rest. Layout (see ``docs/architecture.md``)::

    index.json            format, shapes, shard list, free-form meta
    <shard>.ids.json      image ids of the shard's rows
    <shard>.patch.npy     (n, N, Dv) float16 patch tokens (before ln_post)
    <shard>.global.npy    (n, Dg) float16 projected CLIP image embedding
    <shard>.cos.npy       (n,) float32 CLIP image-caption cosine (optional)

Every file is written to a temporary name and moved into place, and a shard
is listed in ``index.json`` only after all its files exist, so an interrupted
writer never leaves a half-written shard that a reader would trust.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from pcm_plugin.utils.fileio import atomic_write_bytes, atomic_write_json

FORMAT = 'pcm_plugin.features/1'
INDEX = 'index.json'


def write_shard(root: str, name: str, ids: Sequence[str], patch: np.ndarray,
                global_feat: np.ndarray,
                clip_cos: Optional[np.ndarray] = None) -> Dict:
    """Write one shard's files atomically; return its index entry.

    Args:
        root (str): Store directory (created if missing).
        name (str): Shard name, e.g. ``'shard-r0-00003'``.
        ids (Sequence[str]): n image ids.
        patch (np.ndarray): (n, N, Dv) patch tokens.
        global_feat (np.ndarray): (n, Dg) global embeddings.
        clip_cos (np.ndarray, optional): (n,) cosines (NaN where unknown).

    Returns:
        dict: ``{'name': name, 'count': n}``.
    """
    n = len(ids)
    if patch.shape[0] != n or global_feat.shape[0] != n:
        raise ValueError(f'shard {name}: {n} ids but patch rows '
                         f'{patch.shape[0]}, global rows '
                         f'{global_feat.shape[0]}')
    os.makedirs(root, exist_ok=True)
    base = osp.join(root, name)
    arrays = {'patch': patch.astype(np.float16),
              'global': global_feat.astype(np.float16)}
    if clip_cos is not None:
        arrays['cos'] = np.asarray(clip_cos, dtype=np.float32).reshape(n)
    for key, array in arrays.items():
        atomic_write_bytes(f'{base}.{key}.npy',
                           lambda f, a=array: np.save(f, a))
    # ids last: their presence marks the shard as complete.
    atomic_write_json(f'{base}.ids.json', [str(i) for i in ids])
    return {'name': name, 'count': n}


def shard_is_complete(root: str, name: str) -> bool:
    """True if all mandatory files of a shard exist."""
    base = osp.join(root, name)
    return all(
        osp.isfile(f'{base}.{k}') for k in ('ids.json', 'patch.npy',
                                            'global.npy'))


def write_index(root: str, shards: Sequence[Dict], *,
                patch_shape: Sequence[int], global_dim: int,
                meta: Optional[Dict] = None) -> Dict:
    """Write ``index.json`` listing ``shards`` (which must be complete)."""
    for shard in shards:
        if not shard_is_complete(root, shard['name']):
            raise FileNotFoundError(
                f'{osp.join(root, shard["name"])}.*: shard files missing; '
                're-run the extraction to complete the store')
    index = dict(format=FORMAT, patch_shape=[int(x) for x in patch_shape],
                 global_dim=int(global_dim), dtype='float16',
                 num_items=int(sum(s['count'] for s in shards)),
                 shards=list(shards), meta=meta or {})
    atomic_write_json(osp.join(root, INDEX), index)
    return index


def write_feature_store(root: str, ids: Sequence[str], patch: np.ndarray,
                        global_feat: np.ndarray,
                        clip_cos: Optional[np.ndarray] = None, *,
                        shard_size: int = 4096,
                        meta: Optional[Dict] = None) -> Dict:
    """Write a whole store from in-memory arrays (tests, small worlds)."""
    shards = []
    for start in range(0, len(ids), shard_size):
        stop = start + shard_size
        shards.append(
            write_shard(root, f'shard-{start // shard_size:05d}',
                        ids[start:stop], patch[start:stop],
                        global_feat[start:stop],
                        None if clip_cos is None else clip_cos[start:stop]))
    return write_index(root, shards, patch_shape=patch.shape[1:],
                       global_dim=global_feat.shape[1], meta=meta)


def _read_json(path: str):
    """JSON of a store file; a damaged one is named with the fix."""
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'{path} is missing: the feature store is incomplete; rerun '
            'tools/extract_features.py on it (it resumes)') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f'{path} is damaged ({err}); rerun tools/extract_features.py '
            '(or --merge-only to rewrite index.json)') from None


def _load_array(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode='r', allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(
            f'{path} is damaged or truncated ({err}); delete that shard\'s '
            'files and rerun tools/extract_features.py (it re-extracts '
            'missing shards)') from None


def read_store_index(root: str) -> Dict:
    """The ``index.json`` of the store at ``root``, format checked.

    Args:
        root (str): The store directory.

    Returns:
        dict: The index (``patch_shape``, ``global_dim``, ``shards``, ...).

    Raises:
        FileNotFoundError: No ``index.json`` (the message says how to make
            one).
        ValueError: A damaged index or one of another format.
    """
    index_path = osp.join(root, INDEX)
    if not osp.isfile(index_path):
        raise FileNotFoundError(
            f'feature store index {index_path} not found: extract '
            'features with tools/extract_features.py, or fix the '
            '`feature_dir` of the dataset config')
    index = _read_json(index_path)
    if not isinstance(index, dict) or index.get('format') != FORMAT:
        found = index.get('format') if isinstance(index, dict) \
            else type(index).__name__
        raise ValueError(f'{index_path}: format {found!r}, expected '
                         f'{FORMAT!r}')
    return index


# The model settings a store fixes (PCMMixup's keywords), in message order.
LAYOUT_KEYS = ('patch_dim', 'global_dim', 'num_patches')


def store_layout(root: str) -> Dict[str, int]:
    """What a model reading the store at ``root`` must be built with,
    from its ``index.json`` alone (no shard is opened).

    Args:
        root (str): The store directory.

    Returns:
        dict: ``patch_dim`` (Dv), ``global_dim`` (Dg) and ``num_patches``
        (N), the keys of :data:`LAYOUT_KEYS`.
    """
    index = read_store_index(root)
    num_patches, patch_dim = index['patch_shape']
    return dict(patch_dim=int(patch_dim), global_dim=int(index['global_dim']),
                num_patches=int(num_patches))


class FeatureStore:
    """Read-only view of a feature store directory.

    Args:
        root (str): The store directory (holding ``index.json``).

    Example:
        >>> store = FeatureStore('data/coco/features/train')
        >>> item = store.get('6000123')
        >>> item['patch'].shape, item['global_feat'].shape
        ((49, 768), (512,))
    """

    def __init__(self, root: str):
        self.root = root
        self.index = read_store_index(root)
        self.patch_shape = tuple(self.index['patch_shape'])
        self.global_dim = int(self.index['global_dim'])
        self.meta = self.index.get('meta', {})
        self._rows: Dict[str, tuple] = {}
        for shard_no, shard in enumerate(self.index['shards']):
            ids = _read_json(osp.join(root, shard['name'] + '.ids.json'))
            for row, image_id in enumerate(ids):
                self._rows[image_id] = (shard_no, row)
        self._arrays: Dict[tuple, Optional[np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, image_id) -> bool:
        return str(image_id) in self._rows

    @property
    def ids(self) -> List[str]:
        return list(self._rows)

    def _array(self, shard_no: int, key: str) -> Optional[np.ndarray]:
        # Opened lazily so that each dataloader worker maps its own copy.
        if (shard_no, key) not in self._arrays:
            path = osp.join(self.root,
                            f'{self.index["shards"][shard_no]["name"]}.{key}.npy')
            # A plain ndarray over the map: slicing a np.memmap runs
            # Python code (__array_finalize__) for every row read.
            self._arrays[shard_no, key] = (
                np.asarray(_load_array(path)) if osp.isfile(path) else None)
        return self._arrays[shard_no, key]

    def get(self, image_id, dtype: Optional[type] = np.float32) -> Dict:
        """Features of one image, copied out of the shards.

        Args:
            image_id (str | int): The image.
            dtype (type, optional): dtype of ``patch`` and ``global_feat``;
                None keeps the store's float16 (half the bytes to copy,
                collate and move to a GPU: ``CaptionFeaturePreprocessor``
                casts a whole batch at once, and float16 to float32 is
                exact). Defaults to float32.

        Returns:
            dict: ``patch`` (N, Dv), ``global_feat`` (Dg) and ``clip_cos``
            (float, NaN when the store has none for this image).
        """
        key = str(image_id)
        if key not in self._rows:
            raise KeyError(f'image id {key!r} not in feature store '
                           f'{self.root} ({len(self)} items)')
        shard_no, row = self._rows[key]
        cos = self._array(shard_no, 'cos')
        # np.array copies: a view would pin the read-only memory map.
        patch = self._array(shard_no, 'patch')[row]
        glob = self._array(shard_no, 'global')[row]
        return dict(
            patch=np.array(patch, dtype=dtype or patch.dtype),
            global_feat=np.array(glob, dtype=dtype or glob.dtype),
            clip_cos=float('nan') if cos is None else float(cos[row]))

    def global_feats(self, image_ids: Sequence[str]) -> np.ndarray:
        """(len(image_ids), Dg) float32 global embeddings, read shard by
        shard without touching the (much larger) patch tokens."""
        out = np.empty((len(image_ids), self.global_dim), dtype=np.float32)
        by_shard: Dict[int, List[tuple]] = {}
        for pos, image_id in enumerate(image_ids):
            if str(image_id) not in self._rows:
                raise KeyError(f'image id {image_id!r} not in feature store '
                               f'{self.root} ({len(self)} items)')
            shard_no, row = self._rows[str(image_id)]
            by_shard.setdefault(shard_no, []).append((pos, row))
        for shard_no, pairs in by_shard.items():
            pos, rows = (np.array(x) for x in zip(*pairs))
            out[pos] = self._array(shard_no, 'global')[rows]
        return out


_STORES: Dict[str, FeatureStore] = {}


def open_feature_store(root: str) -> FeatureStore:
    """A process-wide cached :class:`FeatureStore` per directory."""
    if root not in _STORES:
        _STORES[root] = FeatureStore(root)
    return _STORES[root]
