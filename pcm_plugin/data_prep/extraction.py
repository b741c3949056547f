"""Images to a sharded CLIP feature store (docs/method.md §2.2).

The items of an annotation file (train: one synthetic image per caption;
val/test: one real image with a ``file_name``) are cut into global shards of
``shard_size`` consecutive items, ``shard-00000``, ``shard-00001``, ...;
shard ``k`` belongs to rank ``k % world_size`` and its batches are fixed
chunks of the shard. So the shard contents, names and batch compositions
are the same for any number of ranks, and a 2-process run writes the same
store as a 1-process run. A shard is written atomically once all its items
are done (``feature_store.write_shard``: ids file last); a rerun skips
complete shards, and after a barrier rank 0 writes ``index.json`` listing
every shard in order (or ``--merge-only`` does it later).

``extract_config.json`` pins everything that determines the features
(model, weights checksum, pooling, precision, item list): a rerun with
other settings stops instead of mixing features in one store.
"""
import hashlib
import json
import logging
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from pcm_plugin.clip.clip_features import (
    caption_cosine,
    extract_batch,
    feature_shapes,
    load_open_clip,
    resolve_pool,
)
from pcm_plugin.clip.image_io import (
    DEFAULT_MAX_PIXELS,
    ImageListDataset,
    candidate_paths,
    collate_items,
)
from pcm_plugin.datasets.feature_store import (
    shard_is_complete,
    write_index,
    write_shard,
)
from pcm_plugin.utils.fileio import (
    atomic_write_json,
    disk_full_error,
    file_sha256,
    remove_stale_temp_files,
)
from pcm_plugin.utils.progress import progress_bar

from .bad_input import BadInputPolicy
from .caption_readers import load_json
from .sharding import (
    barrier,
    check_or_write_settings,
    dist_env,
    owned_by_rank,
    process_group,
    sum_across_ranks,
)

logger = logging.getLogger(__name__)

CONFIG = 'extract_config.json'
# Recorded but not compared on resume (moving files changes no feature;
# the checkpoint's sha256 and the items' checksum are compared instead).
INFORMATIONAL = ('annotation', 'image_dir', 'clip_checkpoint')
SHARD_FILES = ('patch.npy', 'global.npy', 'cos.npy', 'skipped.json',
               'ids.json')


def shard_name(k: int) -> str:
    return f'shard-{k:05d}'


def load_items(ann_file: str, image_dir: str) -> List[Dict]:
    """Images of an annotation file: id, candidate paths, caption or None.

    Train entries (``caption``) get a CLIP cosine; val/test entries
    (``captions`` list) get NaN. Ids must be unique.
    """
    data = load_json(ann_file)
    entries = data.get('data_list') if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{ann_file}: no `data_list` list; expected an '
                         'annotation file (docs/architecture.md)')
    items, seen = [], set()
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or 'image_id' not in entry:
            raise ValueError(f'{ann_file}: data_list[{k}] is not an object '
                             'with an `image_id`')
        image_id = str(entry['image_id'])
        if image_id in seen:
            raise ValueError(f'{ann_file}: data_list[{k}]: image_id '
                             f'{image_id!r} appears twice; the feature store '
                             'needs one entry per image')
        seen.add(image_id)
        caption = entry.get('caption')
        items.append(dict(
            image_id=image_id, caption=caption if isinstance(caption, str)
            else None, file_name=entry.get('file_name'),
            paths=candidate_paths(image_dir, image_id,
                                  entry.get('file_name'))))
    return items


def items_digest(items: Sequence[Dict]) -> str:
    """Checksum of what defines the store's rows (ids, files, captions)."""
    rows = [[i['image_id'], i['file_name'], i['caption']] for i in items]
    return hashlib.sha256(json.dumps(rows).encode('utf-8')).hexdigest()


def check_or_write_config(out_dir: str, config: Dict) -> None:
    """Write ``extract_config.json``, or check it matches a previous run."""
    check_or_write_settings(
        osp.join(out_dir, CONFIG), config,
        what='features extracted with other settings',
        fix='use a new --out-dir, or the old settings to resume',
        ignore=INFORMATIONAL)


def merge_index(out_dir: str) -> Dict:
    """Write ``index.json`` listing all shards of the plan, in order.

    Raises:
        FileNotFoundError: a shard is missing (some rank did not finish).
    """
    path = osp.join(out_dir, CONFIG)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found: {out_dir} is not an '
                                'extraction output folder')
    with open(path, encoding='utf-8') as f:
        config = json.load(f)
    names = [shard_name(k) for k in range(config['num_shards'])]
    missing = [n for n in names if not shard_is_complete(out_dir, n)]
    if missing:
        raise FileNotFoundError(
            f'{out_dir}: {len(missing)} of {len(names)} shards are not '
            f'complete ({", ".join(missing[:5])}...); re-run the extraction '
            'with the same arguments to finish them')
    shards, skipped = [], []
    for name in names:
        base = osp.join(out_dir, name)
        with open(f'{base}.ids.json', encoding='utf-8') as f:
            shards.append(dict(name=name, count=len(json.load(f))))
        if osp.isfile(f'{base}.skipped.json'):
            with open(f'{base}.skipped.json', encoding='utf-8') as f:
                skipped += json.load(f)
    meta = {k: v for k, v in config.items()
            if k not in ('patch_shape', 'global_dim')}
    meta.update(num_skipped=len(skipped), skipped=skipped)
    return write_index(out_dir, shards, patch_shape=config['patch_shape'],
                       global_dim=config['global_dim'], meta=meta)


@dataclass
class ExtractionSettings:
    """How :func:`extract_features` extracts (everything but the paths).

    Args:
        clip_model (str): open_clip model name.
        clip_checkpoint (str, optional): Local weights file.
        pretrained (str, optional): Cached open_clip tag instead.
        model_config (str, optional): Custom open_clip config JSON.
        cache_dir (str, optional): Cache for ``pretrained``.
        pool (str | int): Patch pooling, ``'auto'`` (16x16 -> 8x8) or int.
        batch_size (int): Images per forward pass.
        shard_size (int): Items per shard.
        workers (int): DataLoader worker processes for image decoding.
        device (str, optional): ``cuda:<LOCAL_RANK>`` if CUDA, else CPU.
        dtype (str): Model precision (fp32/fp16/bf16).
        skip_bad (bool): Log and count bad or missing images.
        max_pixels (int, optional): Larger images are bad (0: no limit).
        progress (bool): A progress bar on rank 0.
    """
    clip_model: str
    clip_checkpoint: Optional[str] = None
    pretrained: Optional[str] = None
    model_config: Optional[str] = None
    cache_dir: Optional[str] = None
    pool: Union[str, int] = 'auto'
    batch_size: int = 64
    shard_size: int = 2048
    workers: int = 2
    device: Optional[str] = None
    dtype: str = 'fp32'
    skip_bad: bool = False
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    progress: bool = True

    def check(self) -> None:
        if self.batch_size < 1 or self.shard_size < 1:
            raise ValueError('--batch-size and --shard-size must be >= 1')


def extract_features(ann_file: str, *, image_dir: str, out_dir: str,
                     **settings) -> Dict:
    """Extract this rank's missing shards, then (rank 0) write the index.

    Args:
        ann_file (str): Annotation file (train, val or test).
        image_dir (str): Image root (``<id>.png|jpg`` or ``file_name``).
        out_dir (str): Feature store directory.
        **settings: The fields of :class:`ExtractionSettings`
            (``clip_model`` is required).

    Returns:
        dict: Summary over all ranks (``extracted``, ``skipped_existing``,
        ``skipped_bad``, ``seconds``, ``images_per_s``, ...).
    """
    s = ExtractionSettings(**settings)
    s.check()
    start = time.time()
    rank, world, local_rank = dist_env()
    device = _device(s, world, local_rank)
    items = load_items(ann_file, image_dir)
    model, preprocess, tokenizer, pool, shapes = _load_model(s, device)
    num_shards = -(-len(items) // s.shard_size)
    check_or_write_config(out_dir, _config_record(
        s, ann_file, image_dir, items, pool, shapes, num_shards))
    mine = owned_by_rank(num_shards, rank, world)
    pending = [k for k in mine
               if not shard_is_complete(out_dir, shard_name(k))]
    done_items = sum(min(s.shard_size, len(items) - k * s.shard_size)
                     for k in mine if k not in pending)
    remove_stale_temp_files(out_dir, [f'{shard_name(k)}.{f}'
                                      for k in pending for f in SHARD_FILES])
    logger.info('rank %d/%d: %d of %d shards to extract (%d done), '
                '%d x %d patches + %d global, pool %d', rank, world,
                len(pending), len(mine), len(mine) - len(pending),
                *shapes['patch_shape'], shapes['global_dim'], pool)
    runner = _ShardRunner(model, tokenizer, items, out_dir, pool=pool,
                          device=device, shard_size=s.shard_size,
                          policy=BadInputPolicy(skip_bad=s.skip_bad),
                          shapes=shapes, num_done=len(mine) - len(pending))
    with process_group(world):
        runner.run(pending, preprocess, batch_size=s.batch_size,
                   workers=s.workers, max_pixels=s.max_pixels,
                   progress=s.progress and rank == 0)
        totals = sum_across_ranks([runner.extracted, done_items,
                                   runner.skipped_bad])
        barrier()  # all shards on disk before the index lists them
        if rank == 0:
            index = merge_index(out_dir)
        barrier()
    seconds = time.time() - start
    summary = dict(extracted=int(totals[0]), skipped_existing=int(totals[1]),
                   skipped_bad=int(totals[2]), seconds=round(seconds, 2),
                   world_size=world, out_dir=out_dir,
                   images_per_s=round(totals[0] / seconds, 2))
    if rank == 0:
        summary['num_items'] = index['num_items']
    return summary


def _device(s: ExtractionSettings, world: int, local_rank: int) -> str:
    """The rank's device; fp16 is refused on CPU."""
    device = s.device
    if device is None:
        device = (f'cuda:{local_rank}' if torch.cuda.is_available()
                  else 'cpu')
    elif device == 'cuda' and world > 1:
        device = f'cuda:{local_rank}'
    if s.dtype == 'fp16' and device.startswith('cpu'):
        raise ValueError('--dtype fp16 is not supported on CPU; use fp32')
    return device


def _load_model(s: ExtractionSettings, device: str):
    """``(model, preprocess, tokenizer, pool, shapes)`` of the CLIP."""
    model, preprocess, tokenizer = load_open_clip(
        s.clip_model, checkpoint=s.clip_checkpoint, pretrained=s.pretrained,
        model_config=s.model_config, cache_dir=s.cache_dir, device=device,
        precision=s.dtype)
    pool = resolve_pool(tuple(model.visual.grid_size), s.pool)
    return model, preprocess, tokenizer, pool, feature_shapes(model, pool)


def _config_record(s: ExtractionSettings, ann_file: str, image_dir: str,
                   items, pool: int, shapes: Dict, num_shards: int) -> Dict:
    """What ``extract_config.json`` pins (see :data:`CONFIG`)."""
    checkpoint = s.clip_checkpoint
    return dict(
        format='pcm_plugin.extract_config/1',
        annotation=osp.realpath(ann_file),
        image_dir=osp.realpath(image_dir), clip_model=s.clip_model,
        clip_checkpoint=checkpoint and osp.realpath(checkpoint),
        checkpoint_sha256=checkpoint and file_sha256(checkpoint),
        pretrained=s.pretrained, pool=pool, dtype=s.dtype,
        num_entries=len(items), items_sha256=items_digest(items),
        shard_size=s.shard_size, num_shards=num_shards, **shapes)


class _ShardRunner:
    """Feeds one rank's pending shards through CLIP and writes them."""

    def __init__(self, model, tokenizer, items, out_dir, *, pool, device,
                 shard_size, policy, shapes, num_done):
        self.model, self.tokenizer, self.items = model, tokenizer, items
        self.out_dir, self.pool, self.device = out_dir, pool, device
        self.shard_size, self.policy, self.shapes = shard_size, policy, shapes
        self.num_written = num_done
        self.extracted = self.skipped_bad = 0

    def _batches(self, pending: Sequence[int], batch_size: int):
        for k in pending:
            stop = min((k + 1) * self.shard_size, len(self.items))
            for start in range(k * self.shard_size, stop, batch_size):
                yield list(range(start, min(start + batch_size, stop)))

    def run(self, pending, preprocess, *, batch_size, workers, max_pixels,
            progress) -> None:
        if not pending:
            return
        dataset = ImageListDataset(
            candidates=[i['paths'] for i in self.items],
            transform=preprocess, max_pixels=max_pixels)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=list(self._batches(pending, batch_size)),
            num_workers=workers, collate_fn=collate_items)
        total = sum(min(self.shard_size, len(self.items) - k *
                        self.shard_size) for k in pending)
        bar = progress_bar(total=total, disable=not progress, unit='img',
                           desc='extract')
        buffer = self._new_buffer()
        for batch in loader:
            self._process(batch, buffer)
            bar.update(len(batch))
            shard = batch[-1][0] // self.shard_size
            end = min((shard + 1) * self.shard_size, len(self.items))
            if batch[-1][0] == end - 1:  # the shard's last batch
                self._write(shard, buffer)
                buffer = self._new_buffer()
        bar.close()

    @staticmethod
    def _new_buffer() -> Dict[str, list]:
        return dict(ids=[], patch=[], global_feat=[], cos=[], skipped=[])

    def _process(self, batch, buffer) -> None:
        good = []
        for index, tensor, error in batch:
            image_id = self.items[index]['image_id']
            if error is None:
                good.append((index, tensor))
                continue
            # Raises (naming the file) unless --skip-bad.
            self.policy.bad('bad image', f'image_id {image_id}: {error}')
            buffer['skipped'].append(dict(image_id=image_id, reason=error))
            self.skipped_bad += 1
        if not good:
            return
        dtype = self.model.visual.conv1.weight.dtype
        images = torch.stack([t for _, t in good])  # (B, 3, I, I)
        images = images.to(self.device, dtype)
        patch, global_feat = extract_batch(self.model, images,
                                           pool=self.pool)
        captions = [self.items[i]['caption'] for i, _ in good]
        cos = caption_cosine(self.model, self.tokenizer, global_feat,
                             captions)
        buffer['ids'] += [self.items[i]['image_id'] for i, _ in good]
        buffer['patch'].append(patch.numpy())
        buffer['global_feat'].append(global_feat.numpy())
        buffer['cos'].append(cos.numpy())
        self.extracted += len(good)

    def _write(self, shard: int, buffer) -> None:
        name = shard_name(shard)
        num, width = self.shapes['patch_shape']
        patch = (np.concatenate(buffer['patch']) if buffer['patch'] else
                 np.zeros((0, num, width), np.float16))
        global_feat = (np.concatenate(buffer['global_feat'])
                       if buffer['global_feat'] else
                       np.zeros((0, self.shapes['global_dim']), np.float16))
        cos = (np.concatenate(buffer['cos']) if buffer['cos'] else
               np.zeros((0,), np.float32))
        try:
            if buffer['skipped']:  # before the ids file that seals a shard
                atomic_write_json(
                    osp.join(self.out_dir, f'{name}.skipped.json'),
                    buffer['skipped'])
            write_shard(self.out_dir, name, buffer['ids'], patch,
                        global_feat, cos)
        except OSError as err:
            raise disk_full_error(
                err, osp.join(self.out_dir, name), 'free space (or raise '
                'the quota) and re-run the same command to resume: the '
                f'{self.num_written} shards already written by this rank are '
                'kept and skipped') from err
        self.num_written += 1
