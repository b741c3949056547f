"""Feature extraction benchmarks
(projects/benchmarks/tools/benchmark_extraction.py).

No real CLIP weights exist offline, so the full architecture is built with
random weights (``open_clip.create_model(name, pretrained=None)``) and saved
as an ordinary checkpoint: random weights cost exactly what trained ones
cost, so the speed is the real one; the features are meaningless.

* ``once``: ``tools/extract_features.py``'s code once over a folder, the
  store read back and checked.
* ``bare``: the tool path at each worker count against the bare
  image-tower forward, interleaved (:mod:`.extraction_compare`).
"""
import json
import os
import os.path as osp
import platform
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

IMAGE_EXTS = ('.jpg', '.jpeg', '.png')


def list_images(image_dir: str, limit: Optional[int] = None) -> List[str]:
    """Image file names of ``image_dir``, sorted, optionally the first N.

    Args:
        image_dir (str): Folder of ``.jpg``/``.jpeg``/``.png`` files.
        limit (int, optional): Keep only the first ``limit`` names.

    Returns:
        list[str]: File names (not paths).

    Raises:
        FileNotFoundError: No such folder, or no image in it.
    """
    if not osp.isdir(image_dir):
        raise FileNotFoundError(f'image folder {image_dir} not found; pass '
                                '--image-dir')
    names = sorted(n for n in os.listdir(image_dir)
                   if n.lower().endswith(IMAGE_EXTS))
    if not names:
        raise FileNotFoundError(f'no {"/".join(IMAGE_EXTS)} files in '
                                f'{image_dir}')
    return names[:limit] if limit else names


def write_annotation(path: str, names: Sequence[str]) -> None:
    """A test-style annotation (no captions, so no CLIP text cosine): one
    entry per image, ids 1..n."""
    data_list = [dict(image_id=str(k + 1), file_name=name, captions=[])
                 for k, name in enumerate(names)]
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(dict(metainfo=dict(dataset='benchmark', split='test'),
                       data_list=data_list), f)


def save_random_clip(name: str, path: str, seed: int = 0) -> int:
    """Save open_clip model ``name`` with random weights to ``path``.

    Returns:
        int: Parameters of the image tower.
    """
    import open_clip
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    torch.save(model.state_dict(), path)
    return sum(p.numel() for p in model.visual.parameters())


def check_store(out_dir: str, num_images: int) -> Dict:
    """Read a store back: every image present once, finite features.

    Raises:
        ValueError: Rows missing, images skipped or non-finite features.
    """
    import numpy as np

    from pcm_plugin.datasets import FeatureStore
    store = FeatureStore(out_dir)
    problems = []
    if len(store) != num_images:
        problems.append(f'{len(store)} rows for {num_images} images')
    if store.meta.get('skipped'):
        problems.append(f'skipped: {store.meta["skipped"][:3]}')
    for shard in store.index['shards']:
        for key in ('patch', 'global'):
            array = np.load(osp.join(out_dir, f'{shard["name"]}.{key}.npy'),
                            mmap_mode='r')
            if not np.isfinite(array).all():
                problems.append(f'{shard["name"]}.{key}.npy: not finite')
    if problems:
        raise ValueError('feature store check failed: ' + '; '.join(problems))
    return dict(rows=len(store), patch_shape=list(store.patch_shape),
                global_dim=store.global_dim)


def run_once(ann: str, image_dir: str, out_dir: str, num_images: int,
             **settings) -> Dict:
    """The tool's extraction once, then the store checked.

    Args:
        ann (str): Annotation from :func:`write_annotation`.
        image_dir (str): Its image folder.
        out_dir (str): A new store folder (an existing one would resume
            and measure nothing).
        num_images (int): Images the store must hold.
        **settings: :class:`~pcm_plugin.data_prep.extraction.
            ExtractionSettings` fields (``clip_model``, ``batch_size``...).

    Returns:
        dict: The extraction summary and the store's shapes.
    """
    from pcm_plugin.data_prep.extraction import extract_features
    if osp.exists(out_dir):
        raise FileExistsError(f'{out_dir} exists (the extractor would '
                              'resume and measure nothing)')
    summary = extract_features(ann, image_dir=image_dir, out_dir=out_dir,
                               **settings)
    return dict(summary, **check_store(out_dir, num_images))




def smoke_images(folder: str, num: int = 6) -> str:
    """``num`` small random JPEGs in ``folder`` (the smoke run's photos)."""
    import numpy as np
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(num):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(osp.join(folder, f'{k:03d}.jpg'))
    return folder


def run_benchmark(image_dir: str, work_dir: str, *,
                  clip_model: str = 'ViT-B-32', batch_size: int = 64,
                  workers: Sequence[int] = (2, ), bare: bool = False,
                  reps: int = 3, warmup: int = 1,
                  limit: Optional[int] = None, smoke: bool = False,
                  device: Optional[str] = None) -> Dict:
    """Build a random CLIP, then extract once or compare with the bare
    forward; the report with the machine's load before and after.

    Args:
        image_dir (str): Folder of photos.
        work_dir (str): Empty folder for the checkpoint and the stores.
        clip_model (str): open_clip architecture (random weights).
        batch_size (int): Images per forward.
        workers (Sequence[int]): DataLoader workers; one value without
            ``bare``, each timed with it (the largest is the headline).
        bare (bool): Time the tool path against the bare forward
            (:func:`.extraction_compare.tool_vs_bare`) instead of one
            checked extraction.
        reps (int): With ``bare``: timed repetitions.
        warmup (int): With ``bare``: untimed rounds.
        limit (int, optional): Only the first N images (sorted by name).
        smoke (bool): A tiny ViT-B/32-layout CLIP instead of
            ``clip_model`` (seconds, for tests).
        device (str, optional): Torch device of the tool and the bare
            forward (default: CUDA where available, as the tool).

    Returns:
        dict: Settings, machine, load averages and ``once`` or ``bare``.
    """
    names = list_images(image_dir, limit)
    ann = osp.join(work_dir, 'images.json')
    write_annotation(ann, names)
    start = time.perf_counter()
    if smoke:
        from pcm_plugin.testing import build_tiny_open_clip
        clip_model, ckpt = build_tiny_open_clip(
            osp.join(work_dir, 'clip'), 'pcm-tiny-vit-b32')
        model_config, params = osp.join(work_dir, 'clip',
                                        f'{clip_model}.json'), None
    else:
        ckpt = osp.join(work_dir, f'{clip_model}-random.pt')
        model_config, params = None, save_random_clip(clip_model, ckpt)
    build_s = time.perf_counter() - start
    settings = dict(clip_model=clip_model, clip_checkpoint=ckpt,
                    model_config=model_config, batch_size=batch_size,
                    device=device)
    load_before = os.getloadavg()
    if bare:
        from .extraction_compare import tool_vs_bare
        scratch = osp.join(work_dir, 'stores')
        os.makedirs(scratch)
        result = dict(bare=tool_vs_bare(
            ann, image_dir, scratch, num_images=len(names),
            workers=list(workers), target_workers=max(workers), reps=reps,
            warmup=warmup, **settings))
    else:
        if len(workers) != 1:
            raise ValueError('one --workers value without --bare')
        result = dict(once=run_once(
            ann, image_dir, osp.join(work_dir, 'store'), len(names),
            workers=workers[0], **settings))
    load_after = os.getloadavg()
    return dict(
        image_dir=osp.abspath(image_dir), num_images=len(names),
        clip_model=clip_model, visual_parameters=params,
        batch_size=batch_size, workers=list(workers),
        torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
        model_build_seconds=round(build_s, 2),
        load_avg_before=[round(x, 2) for x in load_before],
        load_avg_after=[round(x, 2) for x in load_after],
        torch=torch.__version__, python=platform.python_version(), **result)


def print_report(report: Dict, file=sys.stdout) -> None:
    """A few readable lines of :func:`run_benchmark`'s report."""
    params = report['visual_parameters']
    size = f'{params / 1e6:.1f} M' if params else 'tiny'
    print(f'{report["clip_model"]} (random weights, image tower {size} '
          f'parameters) on {report["num_images"]} images of '
          f'{report["image_dir"]}; batch {report["batch_size"]}, '
          f'{report["torch_threads"]} torch threads, '
          f'{report["cpu_count"]} CPUs', file=file)
    if 'once' in report:
        once = report['once']
        patch = ' x '.join(str(n) for n in once['patch_shape'])
        print(f'extracted {once["extracted"]}, skipped '
              f'{once["skipped_bad"]}; store rows {once["rows"]}: patches '
              f'{patch} + global {once["global_dim"]}', file=file)
        print(f'{once["seconds"]} s, {once["images_per_s"]} images/s (whole '
              'tool call: model load, checksum, decode, forward, write); '
              f'{report["workers"][0]} workers', file=file)
    else:
        bare = report['bare']
        for name, row in bare['times'].items():
            rate = row.get('images_per_s')
            print(f'  {name:14s} {row["median_s"]:8.2f} s (IQR '
                  f'{row["iqr_s"]:.2f})'
                  + (f'  {rate:6.2f} images/s' if rate else ''), file=file)
        for w in bare['workers']:
            print(f'  workers {w}: tool / bare images/s '
                  f'{bare[f"ratio_w{w}"]:.3f} (whole call), '
                  f'{bare[f"steady_ratio_w{w}"]:.3f} (start-up '
                  f'subtracted), {bare[f"steady_cpu_ratio_w{w}"]:.3f} '
                  '(same, main-process CPU seconds)', file=file)
        profile = bare['profile']
        print(f'  profile (workers {bare["target_workers"]}): '
              + ', '.join(f'{k} {v:.2f} s'
                          for k, v in profile['parts_s'].items())
              + f'; forward {100 * profile["forward_share_of_loop"]:.1f} % '
              'of the loop', file=file)
        print('  ' + bare['coco_extraction_days']['formula'] + ' = '
              f'{bare["coco_extraction_days"]["days"]:.2f} days', file=file)
    print(f'load average (1/5/15 min) before {report["load_avg_before"]}, '
          f'after {report["load_avg_after"]}', file=file)
