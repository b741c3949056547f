"""Benchmark tools/extract_features.py's code on real photos.

No real CLIP weights exist offline, so the script builds the full
architecture with random weights (``open_clip.create_model(name,
pretrained=None)``), saves it as an ordinary checkpoint and runs the
project's extraction code (``pcm_plugin.data_prep.extraction``) over
every image of a folder. Random weights cost exactly what trained ones cost,
so the speed is the real one; the features are meaningless. The store is
then read back and checked: one row per image, nothing skipped, the
documented shapes (ViT-B/32: 49 x 768 patches + 512 global).

Example (the 1,000 Flickr8k photos shipped in ../shared/data)::

    .venv/bin/python tools/analysis/benchmark_extraction.py \\
        --out work_dirs/benchmark_extraction.json

Other engineers may share the CPU cores: the 1/5/15-minute load averages
before and after the run are part of the report.
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_IMAGES = osp.join(osp.dirname(REPO), 'shared', 'data', 'flickr8k',
                          'images')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--image-dir', default=DEFAULT_IMAGES,
                        help='folder of images (default: the shared '
                        'Flickr8k photos)')
    parser.add_argument('--clip-model', default='ViT-B-32',
                        help='open_clip architecture (random weights)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=2,
                        help='image decoding processes (default 2)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s '
                        'choice, one per core)')
    parser.add_argument('--limit', type=int, default=None,
                        help='only the first N images (sorted by name)')
    parser.add_argument('--work-dir', default=None,
                        help='keep the checkpoint, annotation and store '
                        'here (default: a temporary folder, deleted)')
    parser.add_argument('--out', default=None,
                        help='also write the report as JSON')
    return parser.parse_args(argv)


def list_images(image_dir: str, limit: Optional[int] = None) -> List[str]:
    """Image file names of ``image_dir``, sorted, optionally the first N."""
    if not osp.isdir(image_dir):
        sys.exit(f'error: image folder {image_dir} not found; pass '
                 '--image-dir')
    names = sorted(n for n in os.listdir(image_dir)
                   if n.lower().endswith(IMAGE_EXTS))
    if not names:
        sys.exit(f'error: no {"/".join(IMAGE_EXTS)} files in {image_dir}')
    return names[:limit] if limit else names


def write_annotation(path: str, names: List[str]) -> None:
    """A test-style annotation: one entry per image, ids 1..n."""
    data_list = [dict(image_id=str(k + 1), file_name=name, captions=[])
                 for k, name in enumerate(names)]
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(dict(metainfo=dict(dataset='benchmark', split='test'),
                       data_list=data_list), f)


def save_random_clip(name: str, path: str, seed: int = 0) -> int:
    """Save ``name`` with random weights; returns the image tower's size."""
    import open_clip
    import torch
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    torch.save(model.state_dict(), path)
    return sum(p.numel() for p in model.visual.parameters())


def check_store(out_dir: str, num_images: int) -> Dict:
    """Read the store back: every image present once, finite features."""
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
        sys.exit('error: feature store check failed: ' + '; '.join(problems))
    return dict(rows=len(store), patch_shape=list(store.patch_shape),
                global_dim=store.global_dim)


def run(args: argparse.Namespace, work_dir: str) -> Dict:
    """Build the model, extract, check; returns the report."""
    import torch

    from pcm_plugin.data_prep.extraction import extract_features
    if args.threads:
        torch.set_num_threads(args.threads)
    names = list_images(args.image_dir, args.limit)
    if osp.exists(osp.join(work_dir, 'store')):
        sys.exit(f'error: {work_dir}/store exists (the extractor would '
                 'resume and measure nothing); remove it or pick another '
                 '--work-dir')
    ann = osp.join(work_dir, 'images.json')
    write_annotation(ann, names)
    ckpt = osp.join(work_dir, f'{args.clip_model}-random.pt')
    start = time.perf_counter()
    params = save_random_clip(args.clip_model, ckpt)
    build_seconds = time.perf_counter() - start
    load_before = os.getloadavg()
    summary = extract_features(
        ann, image_dir=args.image_dir, out_dir=osp.join(work_dir, 'store'),
        clip_model=args.clip_model, clip_checkpoint=ckpt,
        batch_size=args.batch_size, workers=args.workers, progress=True)
    load_after = os.getloadavg()
    shapes = check_store(osp.join(work_dir, 'store'), len(names))
    return dict(
        image_dir=osp.abspath(args.image_dir), num_images=len(names),
        clip_model=args.clip_model, visual_parameters=params,
        extracted=summary['extracted'], skipped_bad=summary['skipped_bad'],
        **shapes, batch_size=args.batch_size, workers=args.workers,
        torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
        seconds=summary['seconds'], images_per_s=summary['images_per_s'],
        model_build_seconds=round(build_seconds, 2),
        load_avg_before=[round(x, 2) for x in load_before],
        load_avg_after=[round(x, 2) for x in load_after],
        torch=torch.__version__, python=platform.python_version(),
        command=' '.join([osp.relpath(sys.executable, REPO)] + sys.argv))


def print_report(report: Dict) -> None:
    patch = ' x '.join(str(n) for n in report['patch_shape'])
    print(f'{report["clip_model"]} (random weights, image tower '
          f'{report["visual_parameters"] / 1e6:.1f} M parameters) on '
          f'{report["num_images"]} images of {report["image_dir"]}')
    print(f'extracted {report["extracted"]}, skipped {report["skipped_bad"]}'
          f'; store rows {report["rows"]}: patches {patch} + global '
          f'{report["global_dim"]}')
    print(f'{report["seconds"]} s, {report["images_per_s"]} images/s '
          f'(whole tool call: model load, checksum, decode, forward, write)'
          f'; batch {report["batch_size"]}, {report["workers"]} workers, '
          f'{report["torch_threads"]} torch threads, '
          f'{report["cpu_count"]} CPUs')
    print(f'load average (1/5/15 min) before {report["load_avg_before"]}, '
          f'after {report["load_avg_after"]}')


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    sys.path.insert(0, REPO)  # run from a clone without installing
    if args.work_dir:
        os.makedirs(args.work_dir, exist_ok=True)
        report = run(args, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix='bench_extract_') as tmp:
            report = run(args, tmp)
    print_report(report)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
