"""Training data before / after issue 11 target 4 (docs/benchmarks/speed.md):
the real store path (``SynthCaptionDataset`` with ``LoadCLIPFeatures`` +
``PackCaptionInputs``, a DataLoader with mmengine's ``default_collate``, 0
workers, then the model's ``CaptionFeaturePreprocessor``) and the npz path
(one float32 ``.npz`` per image), timed with the previous package (read
from git, ``--before``) and with this checkout's, one process per version,
alternating, on the same files (written once with this checkout).

    OMP_NUM_THREADS=1 python docs/results/benchmark_data_before_after.py \\
        --out docs/results/benchmark_data_before_after.jsonl
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def measure(package_root: str, workspace: str, reps: int = 3) -> dict:
    """Samples/s and CPU us/sample of both paths with the package found
    at ``package_root`` (imported first)."""
    sys.path.insert(0, package_root)
    import numpy as np
    import torch
    from mmcv.transforms import BaseTransform
    from mmengine.dataset import default_collate
    from mmengine.registry import DefaultScope
    from torch.utils.data import DataLoader

    import pcm_plugin
    from pcm_plugin.models import CaptionFeaturePreprocessor
    from pcm_plugin.registry import DATASETS
    assert pcm_plugin.__file__.startswith(package_root), pcm_plugin.__file__
    torch.set_num_threads(1)

    class LoadNpz(BaseTransform):
        def transform(self, results: dict) -> dict:
            path = osp.join(workspace, 'npz', f'{results["image_id"]}.npz')
            with np.load(path) as f:
                results['patch_feats'] = f['features']
                results['global_feat'] = f['g_feature']
            return results

    preprocessor = CaptionFeaturePreprocessor()
    out = {}
    for name in ('store', 'npz'):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            dataset = DATASETS.build(dict(
                type='SynthCaptionDataset',
                feature_dir=osp.join(workspace, 'store'),
                ann_file=osp.join(workspace, 'train.json' if name == 'store'
                                  else 'train_npz.json'),
                pipeline=[dict(type='LoadCLIPFeatures') if name == 'store'
                          else LoadNpz(), dict(type='PackCaptionInputs')]))
        loader = DataLoader(dataset, batch_size=32, shuffle=True,
                            drop_last=True, collate_fn=default_collate,
                            generator=torch.Generator().manual_seed(0))

        def one_pass() -> int:
            return sum(len(preprocessor(b, True)['inputs']['patch_feats'])
                       for b in loader)
        one_pass()  # warm-up
        walls, cpus = [], []
        for _ in range(reps):
            start, cpu = time.perf_counter(), time.process_time()
            seen = one_pass()
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        out[name] = dict(samples_per_s=seen / float(np.median(walls)),
                         cpu_us_per_sample=float(np.median(cpus)) / seen
                         * 1e6)
    out['store_over_npz'] = (out['store']['samples_per_s']
                             / out['npz']['samples_per_s'])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--before', default='4f11290',
                        help='commit of the previous package')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--samples', type=int, default=2048)
    parser.add_argument('--out', help='append one JSON line per process')
    parser.add_argument('--measure', nargs=2, metavar=('ROOT', 'WORKSPACE'),
                        help=argparse.SUPPRESS)  # one version's process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    sys.path.insert(0, REPO)
    with tempfile.TemporaryDirectory() as workspace, \
            tempfile.TemporaryDirectory() as before:
        alternate(args, workspace, before)
    return 0


def alternate(args: argparse.Namespace, workspace: str, before: str) -> None:
    """Write the files, export the previous package, and run one process
    per version, ``args.rounds`` times."""
    from projects.benchmarks.pcm_benchmarks.data_speed import write_layouts
    write_layouts(workspace, num=args.samples)
    archive = subprocess.run(['git', 'archive', args.before, 'pcm_plugin'],
                             cwd=REPO, check=True, capture_output=True)
    subprocess.run(['tar', '-x', '-C', before], input=archive.stdout,
                   check=True)
    for round_no in range(args.rounds):
        for label, root in (('before', before), ('after', REPO)):
            run = subprocess.run(
                [sys.executable, __file__, '--measure', root, workspace],
                check=True, capture_output=True, text=True)
            row = dict(json.loads(run.stdout.splitlines()[-1]),
                       code=label, commit=args.before if label == 'before'
                       else 'checkout', round=round_no)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, 'a', encoding='utf-8') as f:
                    f.write(json.dumps(row) + '\n')


if __name__ == '__main__':
    sys.exit(main())
