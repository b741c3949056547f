"""Performance of PCM-Net at COCO size, side by side with what a user would
pick instead, in one run: training step (Base vs full PCM-Net, achieved
FLOP/s against this process's matmul FLOP/s), beam search against HF BART
``generate(num_beams=3)``, greedy with and without the key/value cache, the
feature store against one ``.npz`` per image (through the real dataset,
DataLoader and data preprocessor), the registered caption
metric against bare pycocoevalcap scorers on the real COCO subset (skipped,
with a note, without ``--shared-data``), and start-up (fresh processes:
``import pcm_plugin`` against ``import mmpretrain``, every tool's
``--help``).

    python projects/benchmarks/tools/benchmark.py \\
        --out work_dirs/benchmark.json                     # `make bench`
    python projects/benchmarks/tools/benchmark.py --decoding-only    # minutes
    python projects/benchmarks/tools/benchmark.py --data-only        # a minute
    python projects/benchmarks/tools/benchmark.py --smoke            # seconds
    python projects/benchmarks/tools/benchmark.py --startup-only     # a minute
    python projects/benchmarks/tools/benchmark.py --evaluation-only  # minutes

Timings interleave the candidates (A, B, A, B, ...) after warm-up and report
median and interquartile range; the 1-minute load average before and after
is recorded, since other work may share the cores. The attention /
precision / compile rows (eager vs SDPA attention x float32 vs bfloat16
autocast x compiled layers or not, training step and beam 3) run on
``--device``; ``--compile-backend none`` leaves the compiled ones out.
The decoding rows run twice: on the random-weight model (its [EOS] made
impossible, so every search runs all the steps) and on a trained
mini-world run (``--trained-run``: real end-of-sentence behaviour, HF BART
held to the steps our search needs); CPU seconds are reported too.
"""
import argparse
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.benchmarks import from a clone.
REPO = osp.abspath(osp.join(osp.dirname(__file__), '../../..'))
sys.path.insert(0, REPO)

import tools._cli  # noqa: E402,F401  the tools' start-up
from projects.benchmarks.pcm_benchmarks.benchmark_suite import (  # noqa: E402
    TRAINED_RUN,
)

ONLY = dict(training_only='training', decoding_only='decoding',
            data_only='data', startup_only='startup',
            evaluation_only='evaluation')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s choice)')
    parser.add_argument('--reps', type=int, default=7)
    parser.add_argument('--smoke', action='store_true',
                        help='tiny sizes: checks that every part runs')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                        help='device of the attention/precision/compile '
                        'rows')
    parser.add_argument('--compile-backend', default=None,
                        help='torch.compile backend of the compiled rows, '
                        "'none' for none (default: inductor; none with "
                        '--smoke, as compiling takes seconds)')
    parser.add_argument('--trained-run', default=None,
                        help='work directory of a trained run (config dump '
                        '+ epoch_*.pth) whose decoder is timed too, with '
                        "real end-of-sentence behaviour; 'none' for none "
                        f'(default: {TRAINED_RUN} when it exists, none '
                        'with --smoke)')
    parser.add_argument('--decoding-only', action='store_true',
                        help='only the decoding part (beam search against '
                        'HF BART, greedy, cache; random and trained)')
    parser.add_argument('--training-only', action='store_true',
                        help='only the training step (FLOP/s against '
                        'matmul, full vs Base, fused vs for-loop Adam, '
                        'where the time goes)')
    parser.add_argument('--data-only', action='store_true',
                        help='only the training-data part (feature store '
                        'vs one .npz per image, through the real dataset '
                        'and DataLoader)')
    parser.add_argument('--data-samples', type=int, default=None,
                        help='images of the data part (default: 4096; 64 '
                        'with --smoke)')
    parser.add_argument('--startup-only', action='store_true',
                        help='only the start-up part (fresh processes)')
    parser.add_argument('--evaluation-only', action='store_true',
                        help='only the caption metric against bare '
                        'pycocoevalcap scorers')
    parser.add_argument('--shared-data', default=None,
                        help='real data folder holding coco-val2014-'
                        'captions/captions_val2014_subset.json, for the '
                        'evaluation part (default: none, that part is '
                        'skipped with a note)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from projects.benchmarks.pcm_benchmarks.benchmark_suite import (
        BenchmarkOptions,
        run,
    )
    from projects.benchmarks.pcm_benchmarks.report import write_report
    only = [part for flag, part in ONLY.items() if getattr(args, flag)]
    if len(only) > 1:
        sys.exit(f'benchmark.py: choose one of the --*-only flags, not '
                 f'{only}')
    options = BenchmarkOptions(
        repo=REPO, shared_data=args.shared_data, smoke=args.smoke,
        reps=args.reps, threads=args.threads, device=args.device,
        compile_backend=args.compile_backend, trained_run=args.trained_run,
        data_samples=args.data_samples)
    report = run(options, only=only[0] if only else None)
    if args.out:
        write_report(args.out, report)
        print(f'written: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
