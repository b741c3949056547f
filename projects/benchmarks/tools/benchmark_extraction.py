"""Benchmark tools/extract_features.py's code on real photos.

The full architecture is built with random weights (no real CLIP weights
exist offline; they cost exactly what trained ones cost) and saved as an
ordinary checkpoint (projects.benchmarks.pcm_benchmarks.extraction_bench).

Once (default): extract every image of a folder with the project's code
and read the store back (one row per image, nothing skipped, the
documented shapes)::

    .venv/bin/python projects/benchmarks/tools/benchmark_extraction.py \\
        --image-dir PHOTOS --out work_dirs/benchmark_extraction.json

Against the bare forward (--bare): the tool path at each --workers count,
its start-up alone and the bare image-tower forward on pre-decoded tensors
at the same batch size, interleaved, plus a cProfile of one tool call::

    OMP_NUM_THREADS=1 .venv/bin/python \\
        projects/benchmarks/tools/benchmark_extraction.py --image-dir PHOTOS \\
        --bare --limit 128 --batch-size 32 --workers 0 1 2 --threads 1

PHOTOS is any folder of images (the published runs used 1,000 Flickr8k
photos); --smoke makes its own.

The 1/5/15-minute load averages before and after are part of the report.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.benchmarks import from a clone.
REPO = osp.abspath(osp.join(osp.dirname(__file__), '../../..'))
sys.path.insert(0, REPO)  # run from a clone without installing
import tools._cli  # noqa: E402,F401  the tools' start-up


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--image-dir', default=None,
                        help='folder of images to extract (required '
                        'unless --smoke, which makes its own)')
    parser.add_argument('--clip-model', default='ViT-B-32',
                        help='open_clip architecture (random weights)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, nargs='+', default=[2],
                        help='image decoding processes (default 2); with '
                        '--bare several counts, each timed')
    parser.add_argument('--bare', action='store_true',
                        help='time the tool path against the bare image-'
                        'tower forward (interleaved, --reps/--warmup)')
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default=None,
                        help='torch device of the tool and the bare forward '
                        '(default: cuda if available, else cpu)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s '
                        'choice, one per core)')
    parser.add_argument('--limit', type=int, default=None,
                        help='only the first N images (sorted by name)')
    parser.add_argument('--smoke', action='store_true',
                        help='seconds: a tiny CLIP on 6 generated images, '
                        '--bare with workers 0 1, one repetition')
    parser.add_argument('--work-dir', default=None,
                        help='keep the checkpoint, annotation and store '
                        'here (default: a temporary folder, deleted)')
    parser.add_argument('--out', default=None,
                        help='also write the report as JSON')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (args.image_dir or args.smoke):
        sys.exit('error: --image-dir DIR is required: a folder of images to '
                 'extract (--smoke makes its own)')
    import torch

    from projects.benchmarks.pcm_benchmarks.extraction_bench import (
        print_report,
        run_benchmark,
        smoke_images,
    )
    from projects.benchmarks.pcm_benchmarks.report import finish_report
    if args.threads:
        torch.set_num_threads(args.threads)
    options = dict(clip_model=args.clip_model, batch_size=args.batch_size,
                   workers=args.workers, bare=args.bare, reps=args.reps,
                   warmup=args.warmup, limit=args.limit,
                   device=args.device)
    with tempfile.TemporaryDirectory(prefix='bench_extract_') as tmp:
        work_dir = args.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        image_dir = args.image_dir
        if args.smoke:
            image_dir = smoke_images(osp.join(work_dir, 'images'))
            options.update(batch_size=2, workers=[0, 1], bare=True, reps=1,
                           warmup=0, smoke=True)
        try:
            report = run_benchmark(image_dir, work_dir, **options)
        except (FileNotFoundError, FileExistsError, ValueError) as err:
            sys.exit(f'error: {err}')
    finish_report(report, show=print_report, out=args.out, tool_file=__file__,
                  argv=argv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
