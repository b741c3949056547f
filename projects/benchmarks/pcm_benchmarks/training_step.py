"""The training step at the COCO size: achieved FLOP/s against the
process's own matrix-multiply FLOP/s, full PCM-Net against Base, and
where the rest of the time goes.

Three steps are timed interleaved: Base and full PCM-Net with the fused
Adam the COCO schedule uses (``configs/_base_/schedules/pcm_noam_12e.py``),
and Base with PyTorch's default (for-loop) Adam, the before of that
change. A ``torch.profiler`` pass then splits each step's CPU time into
matrix products, dropout's random masks, the optimizer and the rest, so a
missed target comes with its reason.
"""
from typing import Callable, Dict

import torch

from . import perf

# Self-time op names of each part of a step (forward and backward).
MATMUL_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm')
DROPOUT_OPS = ('aten::bernoulli_', )  # the masks; applying them is a mul
OPTIMIZER_RANGE = 'Optimizer.step'  # record_function range of every step
MATMUL_REPS = 10  # n x n x n products per timing of the reference


def step_breakdown(fn: Callable[[], None], *, reps: int = 2
                   ) -> Dict[str, float]:
    """Fractions of a step's CPU time by part, from ``torch.profiler``.

    Args:
        fn (callable): One training step.
        reps (int): Steps profiled (after the caller's warm-up).

    Returns:
        dict: ``matmul``, ``dropout_masks``, ``optimizer`` and ``other``
        (fractions summing to 1) and ``total_s`` (CPU seconds per step).
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)  # microseconds

    def self_time(names) -> float:
        return sum(e.self_cpu_time_total for e in events if e.key in names)

    optimizer = sum(e.cpu_time_total for e in events
                    if e.key.startswith(OPTIMIZER_RANGE))
    parts = dict(matmul=self_time(MATMUL_OPS),
                 dropout_masks=self_time(DROPOUT_OPS), optimizer=optimizer)
    out = {name: value / total for name, value in parts.items()}
    out['other'] = 1.0 - sum(out.values())
    out['total_s'] = total / 1e6 / reps
    return out


def training_step_rows(folder: str, *, size: Dict = perf.COCO,
                       reps: int = 5, matmul_n: int = 1024) -> Dict:
    """The target-1 measurements, side by side in one process.

    Args:
        folder (str): Workspace for the random models' files.
        size (dict): Model and batch sizes (:data:`perf.COCO`).
        reps (int): Timed repetitions of each step.
        matmul_n (int): Size of the reference ``n x n x n`` product,
            timed interleaved with the steps (the load hits it alike).

    Returns:
        dict: ``matmul_flops_per_s``; per step (``base``, ``full``,
        ``base_loop_adam``) the timing of :func:`perf.timed_interleaved`,
        ``flops``, ``flops_per_s``, ``of_matmul`` and ``breakdown``;
        ``full_over_base`` and ``fused_adam_speedup`` (time ratios).
    """
    torch.manual_seed(0)
    a, b = torch.randn(matmul_n, matmul_n), torch.randn(matmul_n, matmul_n)

    def matmul() -> None:  # the reference, timed among the steps
        for _ in range(MATMUL_REPS):
            a @ b
    batch = perf.random_batch(size)
    models = {name: perf.build_coco_size(folder, mixup=name == 'full',
                                         size=size)
              for name in ('base', 'full')}
    steps = dict(
        base=perf.train_step_fn(models['base'], batch),
        full=perf.train_step_fn(models['full'], batch),
        base_loop_adam=perf.train_step_fn(models['base'], batch,
                                          fused_adam=False))
    rows = perf.timed_interleaved(dict(steps, matmul=matmul), reps=reps)
    out = dict(matmul_flops_per_s=2 * matmul_n ** 3 * MATMUL_REPS
               / rows.pop('matmul')['median_s'])
    for name, step in steps.items():
        row = rows[name]
        row['flops'] = perf.count_flops(step)
        row['flops_per_s'] = row['flops'] / row['median_s']
        row['of_matmul'] = row['flops_per_s'] / out['matmul_flops_per_s']
        row['breakdown'] = step_breakdown(step)
    out.update(rows)
    out['full_over_base'] = rows['full']['median_s'] / rows['base'][
        'median_s']
    out['fused_adam_speedup'] = (rows['base_loop_adam']['median_s']
                                 / rows['base']['median_s'])
    return out


def format_table(rows: Dict) -> str:
    """A markdown table of :func:`training_step_rows`."""
    lines = [f"matmul (fp32, same process): "
             f"{rows['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s", '',
             '| step | median | IQR | GFLOP | of matmul FLOP/s | matmul | '
             'dropout masks | optimizer | other |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for name in ('base', 'full', 'base_loop_adam'):
        r, b = rows[name], rows[name]['breakdown']
        lines.append(
            f"| {name} | {r['median_s'] * 1e3:.0f} ms | "
            f"{r['iqr_s'] * 1e3:.0f} ms | {r['flops'] / 1e9:.1f} | "
            f"{100 * r['of_matmul']:.0f} % | {100 * b['matmul']:.0f} % | "
            f"{100 * b['dropout_masks']:.0f} % | "
            f"{100 * b['optimizer']:.0f} % | {100 * b['other']:.0f} % |")
    lines += ['', f"full / Base: {rows['full_over_base']:.3f}x; fused Adam: "
              f"{rows['fused_adam_speedup']:.2f}x faster Base step"]
    return '\n'.join(lines)
