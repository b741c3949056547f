"""Training curves from a run's JSON log, as one PNG.

mmengine's ``LocalVisBackend`` writes ``<work_dir>/<timestamp>/vis_data/
scalars.json``: one JSON object per line, training lines with ``iter``
(loss, lr, ...) and validation lines without it, ``step`` being the epoch
(CIDEr, Bleu_4, ...). The same numbers go to TensorBoard when the config
adds ``TensorboardVisBackend`` (docs/train_test.md).
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Sequence, Tuple

from pcm_plugin.utils.fileio import atomic_path


def find_scalars(path: str) -> str:
    """``scalars.json`` itself, or the newest one under a work dir."""
    if osp.isfile(path):
        return path
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(
            f'no */vis_data/scalars.json under {path}: give a work dir of '
            'tools/train.py or the scalars.json file itself')
    return found[-1]


def read_scalars(path: str) -> Tuple[List[Dict], List[Dict]]:
    """``(training rows, validation rows)`` of a ``scalars.json``.

    Raises:
        ValueError: naming the file and line of a damaged entry.
    """
    train, val = [], []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}:{number}: not JSON ({err}); the '
                                 'log is damaged') from None
            (train if 'iter' in row else val).append(row)
    return train, val


def plot_curves(path: str, out: str, *,
                train_keys: Sequence[str] = ('loss', 'lr'),
                val_keys: Sequence[str] = ('CIDEr', )) -> List[str]:
    """Draw every key that the log has, one panel each, to ``out``.

    Args:
        path (str): A work dir or a ``scalars.json``.
        out (str): The PNG to write.
        train_keys (Sequence[str]): Per-iteration keys, against iteration.
        val_keys (Sequence[str]): Per-validation keys, against epoch.

    Returns:
        list[str]: The keys drawn.
    """
    # deferred: matplotlib loads only where a figure is drawn
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    source = find_scalars(path)
    train, val = read_scalars(source)
    panels = [(k, train, 'iter') for k in train_keys
              if any(k in r for r in train)]
    panels += [(k, val, 'step') for k in val_keys if any(k in r for r in val)]
    if not panels:
        raise ValueError(f'{source} has none of {list(train_keys)} '
                         f'{list(val_keys)}')
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2),
                             squeeze=False)
    for ax, (key, rows, x) in zip(axes[0], panels):
        points = [(r[x], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points), marker='o' if x == 'step' else None)
        ax.set_xlabel('iteration' if x == 'iter' else 'epoch')
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if key == 'lr':
            ax.ticklabel_format(axis='y', style='sci', scilimits=(0, 0))
    fig.suptitle(osp.relpath(source), fontsize=8)
    fig.tight_layout()
    with atomic_path(out, suffix='.png') as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return [key for key, _, _ in panels]
