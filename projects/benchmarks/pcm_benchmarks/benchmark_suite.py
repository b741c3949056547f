"""The parts of ``projects/benchmarks/tools/benchmark.py`` (see its
docstring): each fills its keys of one JSON report; :func:`run` runs the
parts asked for and prints their tables.

Timings interleave the candidates after warm-up and report median and
interquartile range; the 1-minute load average before and after is
recorded, since other work may share the cores.
"""
import os
import os.path as osp
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional

from . import benchmark_tables as tables

# A mini-world ablation cell (PCM-Net trained on synthetic renders).
TRAINED_RUN = 'work_dirs/ablation/localized-seed0/full_synth_d030_s0'
# What a run may be limited to (``--<part>-only``); none: all of them.
PARTS = ('training', 'decoding', 'data', 'startup', 'evaluation')


@dataclass(frozen=True)
class BenchmarkOptions:
    """What the tool's flags say (their help texts explain each).

    Args:
        repo (str): The checkout (the start-up part runs its tools).
        shared_data (str, optional): The real data folder of the
            evaluation part; None: that part is skipped with a note.
        smoke (bool): Tiny sizes and 2 repetitions: checks that every
            part runs, times nothing worth reading.
        reps (int): Timed repetitions of each candidate.
        threads (int, optional): torch threads (default: torch's choice).
        device (str): Device of the attention/precision/compile rows.
        compile_backend (str, optional): Their ``torch.compile`` backend;
            ``'none'`` for none (default: inductor; none with ``smoke``).
        trained_run (str, optional): Work directory of a trained run whose
            decoder is timed too; ``'none'`` for none (default:
            :data:`TRAINED_RUN` when it exists, none with ``smoke``).
        data_samples (int, optional): Images of the data part (default:
            4096; 64 with ``smoke``).
    """
    repo: str
    shared_data: Optional[str] = None
    smoke: bool = False
    reps: int = 7
    threads: Optional[int] = None
    device: str = 'cpu'
    compile_backend: Optional[str] = None
    trained_run: Optional[str] = None
    data_samples: Optional[int] = None

    @property
    def size(self) -> Dict:
        from projects.benchmarks.pcm_benchmarks import perf
        return perf.SMOKE if self.smoke else perf.COCO

    @property
    def timed_reps(self) -> int:
        return 2 if self.smoke else self.reps


def phase(text: str) -> None:
    """Say on stderr which part runs (a full run takes many minutes)."""
    print(f'[benchmark] {text}', file=sys.stderr, flush=True)


def training_rows(o: BenchmarkOptions, workspace: str) -> Dict:
    """``train_step``: Base vs full PCM-Net against matmul FLOP/s."""
    from projects.benchmarks.pcm_benchmarks.training_step import (
        training_step_rows,
    )
    phase('training step: Base vs full PCM-Net, fused vs for-loop Adam')
    return training_step_rows(workspace, size=o.size,
                              reps=o.timed_reps,
                              matmul_n=256 if o.smoke else 1024)


def decoding_rows(o: BenchmarkOptions, workspace: str) -> Dict:
    """``decoding`` and ``decoding_trained``: beam 3 against HF BART,
    greedy with and without the cache, and the encoder over all / the
    visible tokens, on a random-weight model (its [EOS] made impossible,
    as HF BART's) and on the trained run."""
    import torch

    from projects.benchmarks.pcm_benchmarks import decoding_bench, perf
    phase('decoding: beam 3 vs HF BART, greedy with/without cache')
    torch.manual_seed(0)
    model = perf.build_coco_size(workspace, mixup=True,
                                 size=o.size)
    model.eval()
    perf.never_end(model.decoder)  # random weights: decode all the steps
    inputs = perf.random_batch(o.size)[0]
    with torch.no_grad():
        memory, mask = model.encode(inputs)
        encoder = perf.timed_interleaved(dict(
            all_tokens=lambda: model.encode(inputs),
            visible_tokens=lambda: model.encode(inputs, drop_masked=True)),
            reps=o.timed_reps, cpu=True)
    rows = decoding_bench.decoding(
        model.decoder, memory, mask, decoding_bench.hf_bart(o.size),
        words=o.size['words'], reps=o.timed_reps, visible_memory=True)
    rows['encoder'] = encoder
    return dict(decoding=rows, decoding_trained=trained_decoding_rows(o))


def trained_decoding_rows(o: BenchmarkOptions) -> Dict:
    """The decoding rows on a trained run's first 32 test images, or why
    they were skipped."""
    run = o.trained_run or (None if o.smoke else TRAINED_RUN)
    if run is None or run == 'none':
        return dict(skipped='no trained run (--trained-run)')
    run = osp.join(o.repo, run)
    if not osp.isdir(run):
        return dict(skipped=f'{run} does not exist')
    from projects.benchmarks.pcm_benchmarks.decoding_bench import (
        decoder_size,
        decoding,
        hf_bart,
        search_steps,
        trained_run_batch,
    )
    phase(f'decoding on the trained run {run}')
    model, memory, mask = trained_run_batch(run)
    decoder = model.decoder
    words = model.max_len
    # BART's [EOS] means nothing with random weights: it decodes as many
    # steps as our beam search needs for its slowest sample.
    steps = search_steps(decoder, memory, mask, beam_size=3, max_len=words)
    out = decoding(decoder, memory, mask, hf_bart(decoder_size(decoder)),
                   words=words, reps=o.timed_reps, bart_steps=steps)
    out.update(run=run, size=decoder_size(decoder),
               memory=list(memory.shape))
    return out


def variants_rows(o: BenchmarkOptions, workspace: str) -> Dict:
    """``variants``: eager vs SDPA x float32 vs bfloat16 x compiled."""
    from projects.benchmarks.pcm_benchmarks import perf
    phase(f'attention x precision x compile on {o.device}')
    backend = o.compile_backend or ('none' if o.smoke else 'inductor')
    return perf.attention_precision_compile(
        workspace, size=o.size, device=o.device,
        reps=o.timed_reps,
        compile_backend=None if backend == 'none' else backend)


def data_rows(o: BenchmarkOptions, workspace: str) -> Dict:
    """``data``: the feature store against one ``.npz`` per image, through
    the real dataset and DataLoader (the two layouts: ~0.9 GB at 4,096
    images, removed with the workspace)."""
    from projects.benchmarks.pcm_benchmarks import data_speed
    phase('data: feature store vs one .npz per image, real dataset + '
          'DataLoader')
    num = o.data_samples or (64 if o.smoke else 4096)
    folder = osp.join(workspace, 'data')
    os.makedirs(folder)
    return data_speed.data_loading(
        folder, num=num, size=o.size, reps=o.timed_reps,
        workers=(0, ) if o.smoke else (0, 2))


def evaluation_rows(o: BenchmarkOptions) -> Dict:
    """``evaluation``: ``COCOCaptionMetric`` against bare pycocoevalcap
    scorers on the real COCO subset (smoke: a few images, no METEOR), or
    why it was skipped."""
    from projects.benchmarks.pcm_benchmarks.metric_speed import evaluation_row
    phase('evaluation: COCOCaptionMetric vs bare pycocoevalcap scorers')
    return evaluation_row(o.shared_data, smoke=o.smoke, reps=o.reps)


def startup_rows(o: BenchmarkOptions) -> Dict:
    """``startup``: fresh processes, ``import pcm_plugin`` against
    ``import mmpretrain`` and every tool's ``--help``."""
    from projects.benchmarks.pcm_benchmarks.startup import startup_times
    phase('start-up: import mmpretrain vs pcm_plugin, --help of each tool')
    # Smoke: one run of each, only to check that the part runs.
    return startup_times(o.repo, reps=1 if o.smoke else o.reps,
                         warmup=0 if o.smoke else 1)


def run(o: BenchmarkOptions, only: Optional[str] = None) -> Dict:
    """Run every part (or ``only`` one of :data:`PARTS`), print the tables.

    Returns:
        dict: The report: the parts' keys, ``threads``, ``size`` and the
        load average before and after.
    """
    if only is not None and only not in PARTS:
        raise ValueError(f'unknown part {only!r}; one of {PARTS}')
    import torch
    if o.threads:
        torch.set_num_threads(o.threads)
    report = dict(load_before=os.getloadavg()[0], device='cpu',
                  size=o.size, threads=torch.get_num_threads())
    # One workspace (the models' tokenizer and concept files, the data
    # part's two layouts) for every part, removed at the end.
    with tempfile.TemporaryDirectory(prefix='pcm_bench_') as workspace:
        if only in (None, 'training'):
            report['train_step'] = training_rows(o, workspace)
            report['matmul_flops_per_s'] = report['train_step'][
                'matmul_flops_per_s']
        if only in (None, 'decoding'):
            report.update(decoding_rows(o, workspace))
        if only is None:
            report['variants'] = variants_rows(o, workspace)
        if only in (None, 'data'):
            report['data'] = data_rows(o, workspace)
    if only in (None, 'evaluation'):
        report['evaluation'] = evaluation_rows(o)
    if only in (None, 'startup'):
        report['startup'] = startup_rows(o)
    report['load_after'] = os.getloadavg()[0]

    print(tables.report_text(report))
    return report
