"""Training step time and peak memory against batch size and caption
length at the PCM-Net COCO size, T(B) = a + b·B fitted by least squares,
and the COCO training time it projects.

    OMP_NUM_THREADS=1 python projects/benchmarks/tools/benchmark_scaling.py \\
        --threads 1 --out work_dirs/scaling.json
    python projects/benchmarks/tools/benchmark_scaling.py --device cuda \\
        --out work_dirs/scaling_cuda.json    # the figure a GPU user plans with
    python projects/benchmarks/tools/benchmark_scaling.py --smoke  # tests

Every batch size of one caption length is timed interleaved; memory is the
model's static bytes (weights, Adam state) plus the step's transient peak
(CUDA: max_memory_allocated; CPU: torch.profiler allocation events). The
projection: days = 12 x floor(542,401 / B) x T(B) / 86,400 (docs/method.md
§6.1), evaluated at --project-batch with the --project-length line.
Extraction against DataLoader workers: benchmark_extraction.py --bare.
"""
import argparse
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.benchmarks import from a clone.
REPO = osp.abspath(osp.join(osp.dirname(__file__), '../../..'))
sys.path.insert(0, REPO)  # run from a clone without installing
import tools._cli  # noqa: E402,F401  the tools' start-up


def pair(value: str):
    """``'128x40'`` -> ``(128, 40)`` (a batch x length to skip)."""
    parts = value.lower().split('x')
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f'{value!r}: BATCHxLENGTH')
    return int(parts[0]), int(parts[1])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--batches', type=int, nargs='+',
                        default=[8, 16, 32, 64, 128])
    parser.add_argument('--lengths', type=int, nargs='+',
                        default=[10, 20, 40], help='caption words')
    parser.add_argument('--skip', type=pair, nargs='*', default=[],
                        help='BATCHxLENGTH pairs left out, e.g. 128x40')
    parser.add_argument('--reps', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--project-batch', type=int, default=32,
                        help='batch of the COCO projection (default: the '
                        'official 32)')
    parser.add_argument('--project-length', type=int, default=20,
                        help='caption length whose T(B) line projects '
                        '(default 20, the COCO max_len)')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch threads (default: torch's choice)")
    parser.add_argument('--smoke', action='store_true',
                        help='tiny model, batches 2 4, lengths 4 6, one rep')
    parser.add_argument('--out', help='write the report as JSON here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from projects.benchmarks.pcm_benchmarks.perf import COCO, SMOKE
    from projects.benchmarks.pcm_benchmarks.report import finish_report
    from projects.benchmarks.pcm_benchmarks.scaling import (
        print_scaling,
        run_scaling,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    options = dict(batches=args.batches, lengths=args.lengths, size=COCO,
                   reps=args.reps, warmup=args.warmup,
                   project_length=args.project_length)
    if args.smoke:
        options = dict(batches=[2, 4], lengths=[4, 6], size=SMOKE, reps=1,
                       warmup=0, project_length=4)
    report = run_scaling(device=args.device, skip=args.skip,
                         project_batch=args.project_batch, **options)
    finish_report(report, show=print_scaling, out=args.out, tool_file=__file__,
                  argv=argv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
