"""Training step time and peak memory against batch size and caption
length at the PCM-Net COCO size, the least-squares line T(B) = a + b·B,
and the COCO training time it projects.

Every batch size of one caption length is timed interleaved
(:func:`.perf.timed_interleaved`), one full PCM-Net training step each
(:func:`.perf.train_step_fn`: forward, backward, Adam). Memory per step is
``static_bytes`` (parameters, buffers and Adam's two moments per trainable
parameter: what lives between steps, counted from the tensors) plus
``transient_bytes``: the peak, during one step started with no gradients
held (``zero_grad(set_to_none=True)``, as every step starts), of tensor
memory allocated above what was live before it (activations, gradients,
temporaries). On CUDA that is ``torch.cuda.max_memory_allocated`` minus
``memory_allocated``; on CPU the running sum of the allocation events of
``torch.profiler`` (``profile_memory=True``), i.e. tensor bytes as an
allocator counts them, not the process's RSS (which adds the interpreter,
the libraries and pages malloc keeps).
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .perf import (
    COCO,
    build_coco_size,
    random_batch,
    synchronize,
    timed_interleaved,
    train_step_fn,
)

# The official COCO recipe: docs/method.md §2.1 (542,401 synthetic pairs;
# batch 32 with drop_last: 16,950 iterations per epoch), §6.1 (12 epochs =
# 203,400 iterations, batch 32 on one GPU), §6.2 (the released ViT-B/32
# COCO model is epoch 10: 169,500 iterations).
COCO_TRAIN = dict(images=542_401, batch=32, epochs=12, iterations=203_400,
                  released_iterations=169_500)
DAY_S = 86_400


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Dict[str, float]:
    """Least-squares line y = a + b·x.

    Args:
        xs (Sequence[float]): At least two distinct x values.
        ys (Sequence[float]): One y per x.

    Returns:
        dict: ``a`` (intercept), ``b`` (slope), ``r2`` and
        ``max_abs_residual``.
    """
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    if x.shape != y.shape or len(set(x.tolist())) < 2:
        raise ValueError('fit_line needs one y per x and two distinct xs')
    design = np.stack([np.ones_like(x), x], axis=1)  # (n, 2)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - (a + b * x)
    spread = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / spread if spread else 1.0
    return dict(a=float(a), b=float(b), r2=r2,
                max_abs_residual=float(np.abs(residual).max()))


def static_bytes(model: torch.nn.Module) -> int:
    """Parameters + buffers + Adam's ``exp_avg`` and ``exp_avg_sq`` of
    every trainable parameter (its scalar step counters left out)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size()
                    for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params + buffers + 2 * trainable


def _cpu_transient_bytes(step: Callable[[], None]) -> int:
    """Peak of the running sum of CPU allocations during ``step``."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == '[memory]'
        and e.device_type() == torch.autograd.DeviceType.CPU)
    live = np.cumsum([nbytes for _, nbytes in events])
    return int(max(0, live.max())) if len(live) else 0


def step_memory(model: torch.nn.Module, step: Callable[[], None],
                device: torch.device) -> Dict:
    """Transient and total (static + transient) bytes of one ``step``.

    Args:
        model (nn.Module): The model ``step`` trains (warmed up, so that
            the optimizer's state exists).
        step (Callable): One training step.
        device (torch.device): Where it runs.

    Returns:
        dict: ``transient_bytes``, ``static_bytes``, ``peak_bytes`` and
        ``method``; on CUDA also ``max_memory_allocated`` (every tensor
        of the process, the other batch sizes' optimizers included).
    """
    model.zero_grad(set_to_none=True)
    out = dict(static_bytes=static_bytes(model))
    if device.type == 'cuda':
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        peak = torch.cuda.max_memory_allocated(device)
        out.update(method='torch.cuda.max_memory_allocated - '
                   'memory_allocated before the step',
                   transient_bytes=peak - before, max_memory_allocated=peak)
    else:
        out.update(method='torch.profiler CPU allocation events, peak of '
                   'their running sum',
                   transient_bytes=_cpu_transient_bytes(step))
    out['peak_bytes'] = out['static_bytes'] + out['transient_bytes']
    return out


def scaling_sweep(folder: str, *, batches: Sequence[int],
                  lengths: Sequence[int], device: str = 'cpu',
                  reps: int = 2, warmup: int = 1,
                  skip: Sequence[Tuple[int, int]] = (),
                  size: Dict = COCO) -> Dict:
    """Step time and memory of the full model for every (batch, length).

    Args:
        folder (str): Workspace for the model's files.
        batches (Sequence[int]): Batch sizes (at least two for the fit).
        lengths (Sequence[int]): Caption lengths in words (the model's
            ``max_len`` and every caption's length).
        device (str): ``'cpu'`` or ``'cuda'``.
        reps (int): Timed repetitions per step.
        warmup (int): Untimed rounds (the first builds Adam's state).
        skip (Sequence[tuple]): ``(batch, length)`` pairs left out.
        size (dict): Model sizes (:data:`.perf.COCO`); ``batch`` and
            ``words`` are overridden.

    Returns:
        dict: ``rows`` (batch, length, median/IQR seconds, seconds per
        sample, memory), ``fits`` (per length: :func:`fit_line` of T(B)),
        ``memory_fits`` (per length: the line of ``peak_bytes`` against B),
        ``per_sample_vs_length`` (the slopes b against L, two or more
        lengths), ``skipped``.
    """
    device = torch.device(device)
    rows, fits, memory_fits = [], {}, {}
    for length in lengths:
        torch.manual_seed(0)
        sized = dict(size, words=length)
        model = build_coco_size(folder, mixup=True, size=sized).to(device)
        steps = {}
        for batch in batches:
            if (batch, length) in skip:
                continue
            inputs, samples = random_batch(dict(sized, batch=batch))
            inputs = {k: v.to(device) for k, v in inputs.items()}
            steps[batch] = train_step_fn(model, (inputs, samples))
        times = timed_interleaved({f'B{b}': fn for b, fn in steps.items()},
                                  warmup=warmup, reps=reps)
        for batch, fn in steps.items():
            t = times[f'B{batch}']
            rows.append(dict(batch=batch, length=length,
                             median_s=t['median_s'], iqr_s=t['iqr_s'],
                             runs=t['runs'],
                             s_per_sample=t['median_s'] / batch,
                             **step_memory(model, fn, device)))
        mine = [r for r in rows if r['length'] == length]
        if len(mine) >= 2:
            batch_sizes = [r['batch'] for r in mine]
            fits[str(length)] = fit_line(batch_sizes,
                                         [r['median_s'] for r in mine])
            memory_fits[str(length)] = fit_line(
                batch_sizes, [r['peak_bytes'] for r in mine])
        del model, steps
    out = dict(device=str(device), size=dict(size, batch=None, words=None),
               batches=list(batches), lengths=list(lengths), reps=reps,
               warmup=warmup, rows=rows, fits=fits, memory_fits=memory_fits,
               skipped=[list(p) for p in skip])
    if len(fits) >= 2:
        out['per_sample_vs_length'] = fit_line(
            [int(k) for k in fits], [f['b'] for f in fits.values()])
    return out


def coco_projection(fit: Dict[str, float], *, batch: Optional[int] = None,
                    recipe: Dict = COCO_TRAIN) -> Dict:
    """Days of COCO training on the measured device, from T(B) = a + b·B.

    Training time = epochs × ⌊images / B⌋ iterations × T(B) seconds; at
    the official batch 32 that is 203,400 × T(32) (the released model's
    169,500 iterations: ``released_days``). Evaluation and checkpointing
    between epochs are not included.

    Args:
        fit (dict): ``a`` and ``b`` of :func:`fit_line` (seconds).
        batch (int, optional): Batch size. Defaults to the recipe's 32.
        recipe (dict): :data:`COCO_TRAIN`.

    Returns:
        dict: ``step_s``, ``iterations``, ``days``, ``released_days``,
        ``iterations_per_day``, ``per_sample_limit_days`` (a large batch
        amortises ``a``: days → epochs × images × b / 86,400) and
        ``formula`` (the numbers written out).
    """
    batch = batch or recipe['batch']
    a, b = fit['a'], fit['b']
    step_s = a + b * batch
    iterations = recipe['epochs'] * (recipe['images'] // batch)
    images, epochs = recipe['images'], recipe['epochs']
    return dict(
        batch=batch, a=a, b=b, step_s=step_s, iterations=iterations,
        days=iterations * step_s / DAY_S,
        released_days=recipe['released_iterations'] * step_s / DAY_S,
        iterations_per_day=DAY_S / step_s,
        per_sample_limit_days=epochs * images * b / DAY_S,
        formula=(f'days(B) = {epochs} x floor({images:,} / B) x '
                 f'({line_text(a, b, "B")}) s / {DAY_S:,}; at B = {batch}: '
                 f'{iterations:,} x {step_s:.4g} s / {DAY_S:,} = '
                 f'{iterations * step_s / DAY_S:.3g} days'))


def run_scaling(*, batches: Sequence[int], lengths: Sequence[int],
                device: str = 'cpu', reps: int = 2, warmup: int = 1,
                skip: Sequence[Tuple[int, int]] = (), size: Dict = COCO,
                project_batch: int = 32, project_length: int = 20) -> Dict:
    """:func:`scaling_sweep` in a scratch folder, the COCO projection of
    the ``project_length`` line at ``project_batch``, and the machine's
    load and threads (the report of
    projects/benchmarks/tools/benchmark_scaling.py).
    """
    import os
    import tempfile
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix='pcm_scaling_') as folder:
        report = scaling_sweep(folder, batches=batches, lengths=lengths,
                               device=device, reps=reps, warmup=warmup,
                               skip=skip, size=size)
    fit = report['fits'].get(str(project_length))
    if fit:
        report['projection'] = dict(
            coco_projection(fit, batch=project_batch), length=project_length)
    report.update(
        load_avg_before=[round(x, 2) for x in load_before],
        load_avg_after=[round(x, 2) for x in os.getloadavg()],
        torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
        torch=torch.__version__)
    return report


def line_text(a: float, b: float, var: str) -> str:
    """``'0.25 + 0.0375 x B'`` (``'- ...'`` for a negative slope)."""
    return f'{a:.4g} {"-" if b < 0 else "+"} {abs(b):.4g} x {var}'


def print_scaling(report: Dict, file=None) -> None:
    """The sweep as a table, its fitted lines and the projection."""
    mb = 2 ** 20
    print(f'{"batch":>5} {"words":>5} {"median s":>9} {"IQR s":>7} '
          f'{"ms/sample":>9} {"transient MB":>12} {"peak MB":>8}', file=file)
    for r in report['rows']:
        print(f'{r["batch"]:5d} {r["length"]:5d} {r["median_s"]:9.3f} '
              f'{r["iqr_s"]:7.3f} {1e3 * r["s_per_sample"]:9.1f} '
              f'{r["transient_bytes"] / mb:12.0f} '
              f'{r["peak_bytes"] / mb:8.0f}', file=file)
    for length, f in report['fits'].items():
        print(f'T(B) at {length} words = {line_text(f["a"], f["b"], "B")} '
              f's (r2 {f["r2"]:.4f})', file=file)
    if 'per_sample_vs_length' in report:
        f = report['per_sample_vs_length']
        print(f'b(L) = {line_text(f["a"], f["b"], "L")} s per sample',
              file=file)
    projection = report.get('projection')
    if projection:
        print(f'COCO ({projection["length"]} words, {report["device"]}): '
              f'{projection["formula"]}; released model '
              f'{projection["released_days"]:.3g} days', file=file)
    print(f'load average before {report["load_avg_before"]}, after '
          f'{report["load_avg_after"]}', file=file)
