"""Performance of PCM-Net at COCO size, side by side with what a user would
pick instead, in one run: training step (Base vs full PCM-Net, achieved
FLOP/s against this process's matmul FLOP/s), beam search against HF BART
``generate(num_beams=3)``, greedy with and without the key/value cache, the
feature store against one ``.npz`` per image (through the real dataset,
DataLoader and data preprocessor), the registered caption
metric against bare pycocoevalcap scorers on the real COCO subset (skipped,
with a note, without ``../shared/data``), and start-up (fresh processes:
``import pcm_plugin`` against ``import mmpretrain``, every tool's
``--help``).

    python tools/analysis/benchmark.py --out work_dirs/benchmark.json
    python tools/analysis/benchmark.py --decoding-only  # a few minutes
    python tools/analysis/benchmark.py --data-only      # about a minute
    python tools/analysis/benchmark.py --smoke          # seconds (tests)
    python tools/analysis/benchmark.py --startup-only   # about a minute
    python tools/analysis/benchmark.py --evaluation-only  # minutes

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
import os
import os.path as osp
import sys
from typing import Callable

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault('HF_HUB_OFFLINE', '1')

# A mini-world ablation cell (PCM-Net trained on synthetic renders).
TRAINED_RUN = 'work_dirs/ablation/localized-seed0/full_synth_d030_s0'
SMOKE = dict(d=32, layers=1, heads=2, ffn=64, vocab=64, patches=4,
             patch_dim=24, global_dim=16, words=5, batch=4, concepts=8)
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')


def main(argv=None) -> int:
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
    parser.add_argument('--shared-data', default=SHARED_DATA,
                        help='the real data folder (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.decoding_only:
        return decoding_only(args)
    if args.data_only:
        return data_only(args)
    if args.training_only:
        return training_only(args)
    from pcm_plugin.analysis.startup import startup_times
    report = dict(load_before=os.getloadavg()[0], device='cpu')
    one_part = args.startup_only or args.evaluation_only
    if not one_part:
        report.update(compute(args))
    if not args.startup_only:
        report['evaluation'] = evaluation(args)
    if not args.evaluation_only:
        phase('start-up: import mmpretrain vs pcm_plugin, --help of each '
              'tool')
        # Smoke: one run of each, only to check that the part runs.
        report['startup'] = startup_times(
            REPO, reps=1 if args.smoke else args.reps,
            warmup=0 if args.smoke else 1)
    report['load_after'] = os.getloadavg()[0]
    if one_part:
        print(f"load {report['load_before']:.2f} -> "
              f"{report['load_after']:.2f}")
    else:
        print_compute_table(report)
    if 'evaluation' in report:
        print_evaluation_table(report['evaluation'])
    if 'startup' in report:
        print_startup_table(report['startup'])
    save_report(args, report)
    return 0


def save_report(args: argparse.Namespace, report: dict) -> None:
    """Write ``report`` to ``--out`` (if given), as every benchmark tool
    does (:func:`pcm_plugin.analysis.report.write_report`)."""
    if args.out:
        from pcm_plugin.analysis.report import write_report
        write_report(args.out, report)
        print(f'written: {args.out}')


def phase(text: str) -> None:
    """Say on stderr which part runs (a full run takes many minutes)."""
    print(f'[benchmark] {text}', file=sys.stderr, flush=True)


def compute(args: argparse.Namespace) -> dict:
    """Training step, decoding and data reading (the report's keys)."""
    import torch

    from pcm_plugin.analysis import perf
    from pcm_plugin.analysis.training_step import training_step_rows
    if args.threads:
        torch.set_num_threads(args.threads)
    size = SMOKE if args.smoke else perf.COCO
    reps = 2 if args.smoke else args.reps
    folder = perf.new_workspace()
    report = dict(size=size, threads=torch.get_num_threads())
    phase('training step: Base vs full PCM-Net, fused vs for-loop Adam')
    report['train_step'] = training_step_rows(
        folder, size=size, reps=reps, matmul_n=256 if args.smoke else 1024)
    report['matmul_flops_per_s'] = report['train_step'][
        'matmul_flops_per_s']
    torch.manual_seed(0)
    full = perf.build_coco_size(folder, mixup=True, size=size)

    report.update(decoding(args, full, size, reps))
    phase(f'attention x precision x compile on {args.device}')
    backend = args.compile_backend or ('none' if args.smoke else 'inductor')
    report['variants'] = perf.attention_precision_compile(
        folder, size=size, device=args.device, reps=reps,
        compile_backend=None if backend == 'none' else backend)
    report['data'] = data(args, size, reps)
    return report


def data(args: argparse.Namespace, size: dict, reps: int) -> dict:
    """The training-data rows (``data_speed.data_loading``), in a
    workspace removed afterwards (the two layouts: ~0.9 GB at 4,096
    images)."""
    import tempfile

    from pcm_plugin.analysis import data_speed
    phase('data: feature store vs one .npz per image, real dataset + '
          'DataLoader')
    num = args.data_samples or (64 if args.smoke else 4096)
    with tempfile.TemporaryDirectory(prefix='pcm_bench_data_') as folder:
        return data_speed.data_loading(
            folder, num=num, size=size, reps=reps,
            workers=(0, ) if args.smoke else (0, 2))


def training_only(args: argparse.Namespace) -> int:
    """``--training-only``: the training-step rows alone."""
    def measure(report: dict, size: dict, reps: int) -> None:
        from pcm_plugin.analysis import perf
        from pcm_plugin.analysis.training_step import training_step_rows
        report['train_step'] = training_step_rows(
            perf.new_workspace(), size=size, reps=reps,
            matmul_n=256 if args.smoke else 1024)

    def table(report: dict) -> None:
        from pcm_plugin.analysis.training_step import format_table
        print(format_table(report['train_step']))
    return one_part(args, measure, table)


def data_only(args: argparse.Namespace) -> int:
    """``--data-only``: the training-data rows alone, printed and saved."""
    def measure(report: dict, size: dict, reps: int) -> None:
        report['data'] = data(args, size, reps)

    def table(report: dict) -> None:
        from pcm_plugin.analysis.data_speed import format_tables
        print('\n'.join(format_tables(report['data'])))
    return one_part(args, measure, table)


def decoding_only(args: argparse.Namespace) -> int:
    """``--decoding-only``: the decoding rows alone, printed and saved."""
    def measure(report: dict, size: dict, reps: int) -> None:
        import torch

        from pcm_plugin.analysis import perf
        torch.manual_seed(0)
        model = perf.build_coco_size(perf.new_workspace(), mixup=True,
                                     size=size)
        report.update(decoding(args, model, size, reps))

    def table(report: dict) -> None:
        print('| measurement | median | IQR | note |\n'
              '| --- | --- | --- | --- |')
        print_decoding_table(report)
    return one_part(args, measure, table)


def one_part(args: argparse.Namespace,
             measure: Callable[[dict, dict, int], None],
             table: Callable[[dict], None]) -> int:
    """A one-part run: threads set, ``measure(report, size, reps)`` fills
    the report, ``table(report)`` prints it, and the JSON is saved."""
    import torch

    from pcm_plugin.analysis import perf
    if args.threads:
        torch.set_num_threads(args.threads)
    size = SMOKE if args.smoke else perf.COCO
    report = dict(load_before=os.getloadavg()[0], device='cpu', size=size,
                  threads=torch.get_num_threads())
    measure(report, size, 2 if args.smoke else args.reps)
    report['load_after'] = os.getloadavg()[0]
    print(f"threads {report['threads']}, load {report['load_before']:.2f} "
          f"-> {report['load_after']:.2f}")
    table(report)
    save_report(args, report)
    return 0


def decoding(args: argparse.Namespace, model, size: dict, reps: int) -> dict:
    """Beam 3 against HF BART, greedy with and without the cache, and the
    encoder over all / the visible tokens, on the random-weight ``model``
    (its [EOS] made impossible, as HF BART's) and on the trained run."""
    import torch

    from pcm_plugin.analysis import perf
    phase('decoding: beam 3 vs HF BART, greedy with/without cache')
    model.eval()
    perf.never_end(model.decoder)  # random weights: decode all the steps
    inputs = perf.random_batch(size)[0]
    with torch.no_grad():
        memory, mask = model.encode(inputs)
        encoder = perf.timed_interleaved(dict(
            all_tokens=lambda: model.encode(inputs),
            visible_tokens=lambda: model.encode(inputs, drop_masked=True)),
            reps=reps, cpu=True)
    rows = perf.decoding(model.decoder, memory, mask, perf.hf_bart(size),
                         words=size['words'], reps=reps, visible_memory=True)
    rows['encoder'] = encoder
    return dict(decoding=rows, decoding_trained=trained_decoding(args, reps))


def trained_decoding(args: argparse.Namespace, reps: int) -> dict:
    """The decoding rows on a trained run's first 32 test images, or why
    they were skipped."""
    run = args.trained_run or (None if args.smoke else TRAINED_RUN)
    if run is None or run == 'none':
        return dict(skipped='no trained run (--trained-run)')
    run = osp.join(REPO, run)
    if not osp.isdir(run):
        return dict(skipped=f'{run} does not exist')
    from pcm_plugin.analysis import perf
    phase(f'decoding on the trained run {run}')
    model, memory, mask = perf.trained_run_batch(run)
    decoder = model.decoder
    words = model.max_len
    # BART's [EOS] means nothing with random weights: it decodes as many
    # steps as our beam search needs for its slowest sample.
    steps = perf.search_steps(decoder, memory, mask, beam_size=3,
                              max_len=words)
    out = perf.decoding(decoder, memory, mask,
                        perf.hf_bart(perf.decoder_size(decoder)),
                        words=words, reps=reps, bart_steps=steps)
    out.update(run=run, size=perf.decoder_size(decoder),
               memory=list(memory.shape))
    return out


def print_decoding_rows(d: dict, title: str) -> None:
    """One decoding comparison (``perf.decoding``) as table rows."""
    names = ('ours_beam3', 'hf_bart_beam3', 'hf_bart_beam3_visible',
             'greedy_cache', 'greedy_no_cache')
    for name in (n for n in names if n in d):
        x = d[name]
        print(f"| {title}: {name} | {x['median_s'] * 1e3:.0f} ms | "
              f"{x['iqr_s'] * 1e3:.0f} ms | {x['captions_per_s']:.0f} "
              f"captions/s, CPU {x['cpu_median_s'] * 1e3:.0f} ms |")
    print(f"| {title}: beam-3 speed-up over HF BART | "
          f"{d['beam_speedup_over_hf_bart']:.2f}x | | CPU time "
          f"{d['beam_speedup_over_hf_bart_cpu']:.2f}x; steps: ours "
          f"{d['steps']}, BART {d['bart_steps']} |")
    print(f"| {title}: cache speed-up (greedy) | {d['cache_speedup']:.2f}x "
          f"| | CPU time {d['cache_speedup_cpu']:.2f}x |")


def print_decoding_table(r: dict) -> None:
    """The decoding rows (``report['decoding']`` and
    ``report['decoding_trained']``) as markdown table rows."""
    d = r['decoding']
    print_decoding_rows(d, 'random weights')
    for name, x in d['encoder'].items():
        print(f"| encoder, test layout, {name} | {x['median_s'] * 1e3:.0f} "
              f"ms | {x['iqr_s'] * 1e3:.0f} ms | CPU "
              f"{x['cpu_median_s'] * 1e3:.0f} ms |")
    trained = r['decoding_trained']
    if 'skipped' in trained:
        print(f"| trained run | skipped | | {trained['skipped']} |")
    else:
        print_decoding_rows(trained, 'trained')


def print_compute_table(r: dict) -> None:
    t = r['train_step']
    print(f"threads {r['threads']}, load {r['load_before']:.2f} -> "
          f"{r['load_after']:.2f}; matmul {r['matmul_flops_per_s'] / 1e9:.1f}"
          ' GFLOP/s')
    from pcm_plugin.analysis.training_step import format_table
    print(format_table(t))
    print_decoding_table(r)
    print_variants_table(r['variants'])
    from pcm_plugin.analysis.data_speed import format_tables
    print('\n'.join(format_tables(r['data'])))


def print_variants_table(v: dict) -> None:
    """Training step and beam 3 of each attention/precision/compile
    variant, relative to eager float32 (``report['variants']``)."""
    print(f"\n{v['device']}, compile backend {v['compile_backend']}"
          + (f"; compile failed: {v['compile_error']}"
             if 'compile_error' in v else ''))
    print('| variant | train step | IQR | vs eager-fp32 | beam 3 | IQR | '
          'vs eager-fp32 | first call (compiling) |\n'
          '| --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, t in v['train_step'].items():
        b = v['beam3'].get(name)
        beam = (f"{b['median_s'] * 1e3:.0f} ms | {b['iqr_s'] * 1e3:.0f} ms | "
                f"{b['over_eager_fp32']:.2f}x" if b else '– | – | –')
        first = ' / '.join(f"{x['first_call_s']:.1f} s" for x in (t, b)
                           if x and 'first_call_s' in x)
        print(f"| {name} | {t['median_s'] * 1e3:.0f} ms | "
              f"{t['iqr_s'] * 1e3:.0f} ms | {t['over_eager_fp32']:.2f}x | "
              f'{beam} | {first} |')
    print()


def evaluation(args: argparse.Namespace) -> dict:
    """``COCOCaptionMetric`` against bare pycocoevalcap scorers on the real
    COCO subset (smoke: a few images, no METEOR), or why it was skipped."""
    from pcm_plugin.evaluation.speed import evaluation_row
    phase('evaluation: COCOCaptionMetric vs bare pycocoevalcap scorers')
    return evaluation_row(args.shared_data, smoke=args.smoke,
                          reps=args.reps)


def print_evaluation_table(e: dict) -> None:
    """The "evaluation" rows (``report['evaluation']``) as a table."""
    if 'skipped' in e:
        print(f"\nevaluation skipped: {e['skipped']}\n")
        return
    print(f"\nevaluation: {e['images']} images, {e['references']} "
          f"references, {'/'.join(e['scorers'])}; predictions: "
          f"{e['predictions']}; scores identical: {e['identical']}")
    print('| evaluation | median | IQR | CPU, JVMs included |\n'
          '| --- | --- | --- | --- |')
    for name, label in (('pycocoevalcap', 'bare pycocoevalcap scorers'),
                        ('metric', 'COCOCaptionMetric')):
        x = e['times'][name]
        print(f"| {label} | {x['median_s']:.2f} s | {x['iqr_s']:.2f} s | "
              f"{x['cpu_s']:.1f} s |")
    ratio = e['metric_over_pycocoevalcap']
    print(f"| metric / bare | {ratio['wall']:.2f}x | | {ratio['cpu']:.2f}x "
          '|\n')


def print_startup_table(s: dict) -> None:
    """The start-up rows (``report['startup']``) as a markdown table."""
    imports, helps = s['imports'], s['help']
    print('| start-up (fresh process) | median | IQR | note |\n'
          '| --- | --- | --- | --- |')
    for name in ('mmpretrain', 'pcm_plugin'):
        x = imports[name]
        print(f"| import {name} | {x['median_s'] * 1e3:.0f} ms | "
              f"{x['iqr_s'] * 1e3:.0f} ms | |")
    print(f"| pcm_plugin / mmpretrain | "
          f"{imports['pcm_plugin_over_mmpretrain']:.3f}x | | |")
    print(f"| --help, slowest tool | {helps['max_s'] * 1e3:.0f} ms | | "
          f"{helps['slowest']} |")
    for tool, x in helps['tools'].items():
        print(f"| {tool} --help | {x['median_s'] * 1e3:.0f} ms | "
              f"{x['iqr_s'] * 1e3:.0f} ms | |")


if __name__ == '__main__':
    sys.exit(main())
