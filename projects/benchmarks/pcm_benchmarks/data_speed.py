"""Training data, side by side: the feature store against one ``.npz`` per
image (the official layout), both through the real ``SynthCaptionDataset``, a
``torch`` ``DataLoader`` with mmengine's ``default_collate`` (as
``projects/mini_world/configs/_base_/datasets/mini_world.py`` builds them) and
the model's ``CaptionFeaturePreprocessor``, from the same random features
written by :func:`write_layouts`.

Rows (``<name>_workers<n>``): ``store`` (the config's pipeline,
``LoadCLIPFeatures`` + ``PackCaptionInputs``, float16 collated and made
float32 by the preprocessor), ``store_loader_only`` (the same batches, no
preprocessor: what a GPU run's host does), ``store_fp32``
(``LoadCLIPFeatures(to_float32=True)``: float32 per sample in the loader),
``npz`` (the same dataset class and ``PackCaptionInputs`` after
:class:`LoadNpzFeatures`, float32 ``features`` and ``g_feature`` read from
one file per image; ``npz_loader_only`` without the preprocessor) and
``store_bare`` (the store's rows alone with torch's collate, no dataset
class, no data samples: the speed ceiling).
"""
import cProfile
import json
import os
import os.path as osp
import pstats
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from torch.utils.data import DataLoader, Dataset

from .perf import COCO, timed_interleaved

ROWS = ('store', 'store_loader_only', 'store_fp32', 'npz', 'npz_loader_only',
        'store_bare')


class LoadNpzFeatures(BaseTransform):
    """Read ``<npz_dir>/<image_id>.npz`` as the official code does: float32
    arrays ``features`` (N, Dv) and ``g_feature`` (Dg,), one zip per image.

    Args:
        npz_dir (str): Folder of the ``.npz`` files.
    """

    def __init__(self, npz_dir: str) -> None:
        self.npz_dir = npz_dir

    def transform(self, results: dict) -> dict:
        path = osp.join(self.npz_dir, f'{results["image_id"]}.npz')
        with np.load(path) as f:
            results['patch_feats'] = f['features']
            results['global_feat'] = f['g_feature']
        return results


class StoreRows(Dataset):
    """The store's float16 rows alone (no dataset class, no DataSample).

    Args:
        root (str): Feature store directory.
        ids (Sequence[str]): Image ids, in index order.
    """

    def __init__(self, root: str, ids: Sequence[str]) -> None:
        self.root, self.ids = root, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        from pcm_plugin.datasets.feature_store import open_feature_store
        item = open_feature_store(self.root).get(self.ids[i], dtype=None)
        return torch.from_numpy(item['patch']), torch.from_numpy(
            item['global_feat'])


def folder_bytes(path: str) -> int:
    """Bytes of the files directly in ``path``."""
    return sum(osp.getsize(osp.join(path, f)) for f in os.listdir(path))


def write_layouts(folder: str, *, num: int, size: Dict = COCO,
                  seed: int = 0) -> Dict:
    """Write the same random features as a feature store and as one
    float32 ``.npz`` per image, with a caption annotation for each.

    Args:
        folder (str): Workspace.
        num (int): Images.
        size (dict): ``patches``, ``patch_dim`` and ``global_dim``.
        seed (int): Seed of the features and cosines.

    Returns:
        dict: Paths ``store``, ``npz``, ``ann`` (the store's cosines),
        ``ann_npz`` (the cosines in the entries, as refined files carry
        them) and ``ids``; ``bytes_store`` and ``bytes_npz``.
    """
    from pcm_plugin.datasets.feature_store import write_feature_store
    rng = np.random.default_rng(seed)
    patch = rng.standard_normal(
        (num, size['patches'], size['patch_dim']),
        dtype=np.float32).astype(np.float16)  # (num, N, Dv)
    glob = rng.standard_normal((num, size['global_dim']),
                               dtype=np.float32).astype(np.float16)
    cos = rng.uniform(0.1, 0.4, num).astype(np.float32)
    ids = [str(i) for i in range(num)]
    out = dict(store=osp.join(folder, 'store'), npz=osp.join(folder, 'npz'),
               ann=osp.join(folder, 'train.json'),
               ann_npz=osp.join(folder, 'train_npz.json'), ids=ids)
    write_feature_store(out['store'], ids, patch, glob, cos)
    os.makedirs(out['npz'], exist_ok=True)
    for i, image_id in enumerate(ids):
        # The official layout: float32 arrays, one file per image.
        np.savez(osp.join(out['npz'], f'{image_id}.npz'),
                 features=patch[i].astype(np.float32),
                 g_feature=glob[i].astype(np.float32))
    for key, with_cos in (('ann', False), ('ann_npz', True)):
        entries = [dict(image_id=image_id, caption=f'a caption {image_id}')
                   for image_id in ids]
        if with_cos:
            for entry, value in zip(entries, cos.tolist()):
                entry['clip_cos'] = value
        with open(out[key], 'w', encoding='utf-8') as f:
            json.dump(dict(metainfo={}, data_list=entries), f)
    out.update(bytes_store=folder_bytes(out['store']),
               bytes_npz=folder_bytes(out['npz']))
    return out


def build_dataset(layouts: Dict, row: str) -> Dataset:
    """The dataset of one row, built through the registry as a config
    builds it (``store_bare``: :class:`StoreRows`)."""
    if row == 'store_bare':
        return StoreRows(layouts['store'], layouts['ids'])
    from mmengine.registry import DefaultScope

    import pcm_plugin  # noqa: F401 (registers the plugin's types)
    from pcm_plugin.registry import DATASETS
    pipeline = [dict(type='LoadCLIPFeatures'), dict(type='PackCaptionInputs')]
    if row == 'store_fp32':
        pipeline[0] = dict(type='LoadCLIPFeatures', to_float32=True)
    elif row == 'npz':
        pipeline[0] = LoadNpzFeatures(layouts['npz'])
    # The registered names resolve in mmpretrain's scope, as in a Runner.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dict(
            type='SynthCaptionDataset', feature_dir=layouts['store'],
            ann_file=layouts['ann_npz' if row == 'npz' else 'ann'],
            pipeline=pipeline))


class LoaderPass:
    """One shuffled pass over a dataset per call, each batch through the
    model's preprocessor (float32, finite check) when ``preprocess``.

    Workers persist across passes, as in a long training run, so their
    start is paid once (in the warm-up).

    Args:
        dataset (Dataset): What the loader reads.
        workers (int): DataLoader workers.
        batch (int): Batch size (the last partial batch is dropped).
        preprocess (bool): Run ``CaptionFeaturePreprocessor`` on CPU.
    """

    def __init__(self, dataset: Dataset, *, workers: int, batch: int = 32,
                 preprocess: bool = True) -> None:
        from mmengine.dataset import default_collate

        from pcm_plugin.models.data_preprocessor import (
            CaptionFeaturePreprocessor,
        )
        self.preprocessor = CaptionFeaturePreprocessor() if preprocess \
            else None
        # The bare rows are plain tensors: torch's own collate.
        collate = None if isinstance(dataset, StoreRows) else default_collate
        self.loader = DataLoader(
            dataset, batch_size=batch, shuffle=True, drop_last=True,
            num_workers=workers, persistent_workers=workers > 0,
            collate_fn=collate, generator=torch.Generator().manual_seed(0))

    def __call__(self) -> int:
        """One pass; returns the samples read."""
        seen = 0
        for data in self.loader:
            if self.preprocessor is not None:
                data = self.preprocessor(data, True)
            patch = data['inputs']['patch_feats'] if isinstance(data, dict) \
                else data[0]
            seen += len(patch)
        return seen

    def cpu_s(self) -> float:
        """CPU seconds so far of this process and of the loader's workers
        (read from ``/proc``; NaN where that is missing)."""
        total = time.process_time()
        workers = getattr(getattr(self.loader, '_iterator', None),
                          '_workers', [])
        for worker in workers:
            try:
                with open(f'/proc/{worker.pid}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                return float('nan')
            # utime and stime, in clock ticks.
            total += (int(fields[11]) + int(fields[12])) / os.sysconf(
                'SC_CLK_TCK')
        return total


def profile_pass(fn: LoaderPass, *, top: int = 12) -> Dict:
    """cProfile of one pass (run it with 0 workers: one process, one
    thread): the functions with the most own time, per sample."""
    profile = cProfile.Profile()
    seen = profile.runcall(fn)
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    return dict(samples=seen, total_s=stats.total_tt,
                us_per_sample=stats.total_tt / seen * 1e6, top=[
                    dict(function=f'{osp.basename(file)}:{line}({name})',
                         calls=calls, own_s=own,
                         us_per_sample=own / seen * 1e6,
                         share=own / stats.total_tt)
                    for (file, line, name), (_, calls, own, _, _) in rows])


def data_loading(folder: str, *, num: int = 4096,
                 workers: Sequence[int] = (0, 2), size: Dict = COCO,
                 reps: int = 5, rows: Sequence[str] = ROWS,
                 profile: Optional[Sequence[str]] = ('store', 'npz')
                 ) -> Dict:
    """Samples/s of every row at each worker count, timed interleaved
    (A, B, A, B, ...: 1 warm-up pass, ``reps`` timed passes, median), CPU
    per sample (workers included), and bytes on disk.

    Args:
        folder (str): Workspace for the two layouts.
        num (int): Images (samples per pass; the last partial batch is
            dropped).
        workers (Sequence[int]): DataLoader worker counts.
        size (dict): Feature sizes and ``batch`` (32 if absent). Defaults
            to :data:`COCO`.
        reps (int): Timed passes per row.
        rows (Sequence[str]): Rows of :data:`ROWS` to time.
        profile (Sequence[str], optional): Rows profiled with 0 workers.

    Returns:
        dict: ``rows`` (per ``<row>_workers<n>``: median/IQR wall seconds
        and median CPU seconds of a pass, ``samples_per_s`` and
        ``cpu_us_per_sample``), ``store_over_npz_workers<n>`` (and
        ``_loader_only``), ``bytes_store``, ``bytes_npz``, ``samples``
        and ``profile``.
    """
    layouts = write_layouts(folder, num=num, size=size)
    datasets = {name: build_dataset(layouts, name) for name in
                {row.replace('_loader_only', '') for row in rows}}
    batch = size.get('batch', 32)
    out = dict(samples=num // batch * batch, batch=batch, rows={},
               bytes_store=layouts['bytes_store'],
               bytes_npz=layouts['bytes_npz'], profile={})
    for n in workers:
        passes = {row: LoaderPass(
            datasets[row.replace('_loader_only', '')], workers=n,
            batch=batch,
            preprocess=not row.endswith(('_loader_only', '_bare')))
            for row in rows}
        # CPU seconds of a pass count the workers too: what the loading
        # costs whatever else runs on the machine.
        times = timed_interleaved(
            passes, warmup=1, reps=reps, cpu=True,
            cpu_clocks={row: p.cpu_s for row, p in passes.items()})
        for row, t in times.items():
            t['samples_per_s'] = out['samples'] / t['median_s']
            t['cpu_us_per_sample'] = (t['cpu_median_s'] / out['samples']
                                      * 1e6)
            out['rows'][f'{row}_workers{n}'] = t
        for suffix in ('', '_loader_only'):
            store, npz = times.get('store' + suffix), times.get('npz' + suffix)
            if store and npz:
                out[f'store_over_npz{suffix}_workers{n}'] = (
                    npz['median_s'] / store['median_s'])
        del passes  # ends the persistent workers before the next count
    for row in profile or ():
        out['profile'][row] = profile_pass(LoaderPass(
            datasets[row], workers=0, batch=batch,
            preprocess=row != 'store_bare'))
    return out


def format_tables(data: Dict) -> List[str]:
    """Markdown lines: samples/s and CPU per sample of each row and worker
    count, the store/npz ratios, bytes, and each profile's top functions."""
    counts = sorted({int(k.rsplit('workers', 1)[1]) for k in data['rows']})
    names = [r for r in ROWS if any(k.startswith(r + '_workers')
                                    for k in data['rows'])]
    lines = ['| row | ' + ' | '.join(
        f'{n} workers: samples/s (IQR) | CPU us/sample' for n in counts)
        + ' |', '| --- |' + ' --- | --- |' * len(counts)]
    for name in names:
        cells = []
        for n in counts:
            t = data['rows'].get(f'{name}_workers{n}')
            cells.append('– | –' if t is None else
                         f"{t['samples_per_s']:,.0f} (±"
                         f"{t['iqr_s'] / t['median_s']:.0%}) | "
                         f"{t['cpu_us_per_sample']:.0f}")
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    for suffix in ('', '_loader_only'):
        ratios = [f"{data[k]:.2f}x |" if k in data else '– |' for k in (
            f'store_over_npz{suffix}_workers{n}' for n in counts)]
        lines.append(f'| store{suffix} / npz{suffix} | '
                     + ' | '.join(ratios) + ' |')
    lines.append(f"\nbytes on disk, store / npz: "
                 f"{data['bytes_store'] / data['bytes_npz']:.2f}")
    for row, prof in data['profile'].items():
        lines.append(f"\nprofile of {row}, 0 workers: "
                     f"{prof['us_per_sample']:.0f} us/sample under cProfile")
        lines.append('| function | calls | own us/sample | share |\n'
                     '| --- | --- | --- | --- |')
        lines.extend(f"| {x['function']} | {x['calls']} | "
                     f"{x['us_per_sample']:.1f} | {x['share']:.0%} |"
                     for x in prof['top'])
    return lines
