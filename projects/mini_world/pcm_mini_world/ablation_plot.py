"""The ablation as a picture: a metric against the defect rate.

One panel per world, one line per variant (mean over seeds, error bars one
standard deviation; SynC-refined variants dotted in their variant's colour),
the train-on-real upper bound as a dashed level with its band. Used by
``projects/mini_world/tools/ablation.py --plot``.
"""
import statistics
from typing import Dict, List, Sequence

from .ablation import VARIANTS, _by_seed, _labels, paper_scale

COLOURS = dict(base='#4d4d4d', pcm='#1f77b4', cxe='#2ca02c', full='#d62728',
               cxe_nofocal='#98df8a', full_nofocal='#ff9896', real='#9467bd')


def _worlds(rows: List[Dict]) -> List[str]:
    return sorted({r.get('world', 'world') for r in rows})


def plot_ablation(rows: List[Dict], path: str, *, key: str = 'CIDEr',
                  variants: Sequence[str] = tuple(VARIANTS)) -> None:
    """Draw ``key`` (×100) against the defect rate and save a PNG.

    Args:
        rows (list[dict]): Result rows (``read_results``).
        path (str): The PNG to write.
        key (str): The metric. Defaults to ``'CIDEr'``.
        variants (Sequence[str]): Which variants to draw (each also
            refined, where rows exist), in this order.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from pcm_plugin.utils.fileio import atomic_path
    worlds = _worlds(rows)
    fig, axes = plt.subplots(1, len(worlds), figsize=(4.2 * len(worlds), 3.6),
                             squeeze=False, sharey=False)
    for ax, world in zip(axes[0], worlds):
        mine = [r for r in rows if r.get('world', 'world') == world]
        rates = sorted({r['rate'] for r in mine if r['rate'] is not None})
        names = [n for n in _labels(mine) if n.split('+')[0] in variants]
        drawn = [n for n in names if n != 'real']
        for name in names:
            if name == 'real':
                _draw_level(ax, mine, rates, key)
                continue
            points = [(rate, list(_by_seed(mine, name, rate, key).values()))
                      for rate in rates]
            points = [(rate, v) for rate, v in points if v]
            if not points:
                continue
            # Side by side, so that the error bars do not hide each other.
            shift = 0.01 * (drawn.index(name) - (len(drawn) - 1) / 2)
            xs = [rate + shift for rate, _ in points]
            means = [statistics.mean(v) for _, v in points]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0
                    for _, v in points]
            ns = '/'.join(str(len(v)) for _, v in points)
            ax.errorbar(xs, means, yerr=stds, marker='o', capsize=3,
                        color=COLOURS.get(name.split('+')[0]),
                        linestyle=':' if name.endswith('+sync') else '-',
                        label=f'{name} (n={ns})')
        ax.set_title(world)
        ax.set_xlabel('defect rate of the synthetic training images')
        ax.set_xticks(rates)
        if len(rates) == 1:  # one rate: keep the points close together
            ax.set_xlim(rates[0] - 0.1, rates[0] + 0.1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f'{key} ×100 on the real test renders')
    for ax in axes[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix='.png') as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _draw_level(ax, rows: List[Dict], rates: List[float], key: str) -> None:
    """The rate-independent upper bound: a dashed line and its ±1 sd."""
    values = [paper_scale(r, key) for r in rows
              if r['variant'] == 'real' and key in r]
    if not values or not rates:
        return
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    lo, hi = min(rates), max(rates)
    ax.hlines(mean, lo, hi, colors=COLOURS['real'], linestyles='dashed',
              label=f'real (n={len(values)})')
    ax.fill_between([lo, hi], mean - std, mean + std,
                    color=COLOURS['real'], alpha=0.12)
