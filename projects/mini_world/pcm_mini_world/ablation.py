"""The component ablation of paper Table 3, on the mini world.

Each variant is a config in ``configs/`` (so any cell can be rerun with
``tools/train.py``):

* ``base``  — ``pcm_shapes_base.py``: no mix-up (``PCMMixup(mode='none')``),
  plain label-smoothed CE (``clip_weighted=False``, ``focal='none'``);
* ``pcm``   — ``pcm_shapes_pcm.py``: + patch-wise cross-modal mix-up;
* ``cxe``   — ``pcm_shapes_cxe.py``: + CLIP-weighted CE (as implemented:
  batch focal factor on);
* ``full``  — ``pcm_shapes.py``: PCM-Net, both;
* ``real``  — the Base config trained on *real* renders of the training
  captions: an upper bound no text-only method can beat;
* ``cxe_nofocal`` / ``full_nofocal`` — opt-in (``pcm_shapes_cxe_nofocal.py``,
  ``pcm_shapes_nofocal.py``): the CLIP weights without the official code's
  batch focal factor (paper Eq. 11), to separate the two parts of CXE;
* ``full_perconcept`` / ``full_nostuff`` — opt-in
  (``pcm_shapes_perconcept.py``, ``pcm_shapes_nostuff.py``): full PCM-Net
  with the mix-up's other selection rules (one patch per retrieved
  concept; the world's backgrounds never written), against ``full``.

Each is trained per defect rate and seed and tested on the real test
renders; results are appended to a JSON-lines file as they finish, so an
interrupted sweep resumes where it stopped. With ``refined=True`` the
synthetic variants train on the SynC-refined pairs of the rate
(:mod:`.refine`); rows carry ``refined`` and the tables label them
``<variant>+sync``.

Rows carry the scale of their scores (``metric_scale``: 100, the metric's,
as papers report them); a row without it was written when the metric
reported pycocoevalcap's ×1 (the committed ``docs/results/*.jsonl``).
Tables and plots read every row through :func:`paper_scale`, so old and
new rows mix in one sweep.
"""
import json
import os
import os.path as osp
import statistics
import time
from typing import Dict, Iterable, List, Optional, Sequence

from pcm_plugin.engine.amp import amp_optim_wrapper, amp_test_cfg
from pcm_plugin.evaluation.caption_metric import PAPER_SCALE

from .names import DEFAULT_ROOT, DEFAULT_VARIANTS, VARIANTS  # noqa: F401
from .refine import refined_annotation
from .runs import train_and_test, world_config
from .world import load_world, synth_name

# A row's key naming the scale of its scores; absent: ×1 (rows written
# before the metric reported ×100).
SCALE_KEY = 'metric_scale'


def cell_dir(work_root: str, world: Dict, variant: str, *, rate: float,
             seed: int, refined: bool = False) -> str:
    """Work directory of one cell: ``<work_root>/<world>/<cell>``."""
    train_set = VARIANTS[variant][1] or synth_name(rate)
    return osp.join(work_root, world.get('name', 'world'),
                    f'{variant}_{train_set}{"_sync" if refined else ""}'
                    f'_s{seed}')


def variant_config(config_dir: str, world: Dict, variant: str, *,
                   rate: float, seed: int, work_root: str,
                   max_epochs: Optional[int] = None, refined: bool = False,
                   amp: Optional[str] = None):
    """The config of one ablation cell (test only, no validation).

    ``amp`` ('bfloat16') trains and tests under autocast
    (:mod:`pcm_plugin.engine.amp`), as ``tools/train.py --amp`` does.
    """
    config, train_set = VARIANTS[variant]
    if refined and train_set is not None:
        raise ValueError(f'variant {variant!r} trains on {train_set}, not '
                         'on synthetic pairs: there is nothing to refine')
    cfg = world_config(osp.join(config_dir, config), world,
                       work_dir=cell_dir(work_root, world, variant,
                                         rate=rate, seed=seed,
                                         refined=refined),
                       train_set=train_set or synth_name(rate),
                       max_epochs=max_epochs, seed=seed,
                       # its entries name their stores, carry their cosines
                       train_ann=(refined_annotation(world, rate) if refined
                                  else None))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    # The tables use CIDEr and BLEU-4: no METEOR JVM per cell.
    cfg.test_evaluator.scorers = ('bleu', 'rouge', 'cider')
    if amp is not None:
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, amp)
        cfg.test_cfg = amp_test_cfg(cfg.get('test_cfg'), amp)
    return cfg


def read_results(path: str) -> List[Dict]:
    if not osp.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def paper_scale(row: Dict, key: str) -> float:
    """``row[key]`` ×100 (as papers report it), whatever the row's scale.

    Args:
        row (dict): A result row; its ``metric_scale`` (absent: 1) is the
            scale ``row[key]`` was written on.
        key (str): A score of the row, e.g. ``'CIDEr'``.

    Returns:
        float: The score on the :data:`PAPER_SCALE`.
    """
    scale = row.get(SCALE_KEY, 1)
    if scale == PAPER_SCALE:
        return row[key]
    return row[key] * (PAPER_SCALE / scale)


def evaluator_scale(cfg) -> float:
    """The scale of a config's test metric (its ``scale``, or the
    metric's default)."""
    return cfg.test_evaluator.get('scale', PAPER_SCALE)


def check_world_has(world: Dict, rates: Sequence[float],
                    variants: Sequence[str]) -> None:
    """Refuse (naming the fix) when the world lacks a needed store."""
    needed = {VARIANTS[v][1] or synth_name(r) for v in variants
              for r in rates}
    missing = sorted(needed - set(world['features']))
    if missing:
        s = world['settings']
        rates_all = sorted(set(s['defect_rates']) | set(rates))
        raise FileNotFoundError(
            f'the world at {world["root"]} has no feature store '
            f'{missing}; extend it (nothing prepared is rebuilt) with '
            '`python projects/mini_world/tools/prepare.py '
            f'--root {world["root"]} '
            f'--seed {s["seed"]} --clip {s.get("clip", "weak")} '
            f'--num-train {s["num_train"]} --num-val {s["num_val"]} '
            f'--num-test {s["num_test"]} '
            + (f'--captions-per-scene {s["captions_per_scene"]} '
               if s.get('captions_per_scene', 1) != 1 else '')
            + '--defect-rates '
            + ' '.join(str(r) for r in rates_all)
            + (' --real-train' if 'real' in variants or s['real_train']
               else '') + '`')


class CellClaim:
    """An exclusive claim on one cell (``<cell dir>.claim`` holding the
    owner's pid), so several lanes can share one sweep: a lane skips cells
    another live lane holds; a dead lane's claim is taken over."""

    def __init__(self, work_dir: str):
        self.path = work_dir.rstrip('/') + '.claim'

    def acquire(self) -> bool:
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._owner_alive():
                    return False
                os.remove(self.path)  # stale: its lane died
                continue
            with os.fdopen(fd, 'w') as f:
                f.write(str(os.getpid()))
            return True
        return False

    def _owner_alive(self) -> bool:
        try:
            with open(self.path) as f:
                pid = int(f.read().strip() or 0)
            os.kill(pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def release(self) -> None:
        if osp.isfile(self.path):
            os.remove(self.path)


def finished_cells(path: str) -> set:
    """``(world, variant, rate, seed, refined)`` of every row in a results
    file (rows written before SynC existed are unrefined)."""
    return {(r.get('world'), r['variant'], r['rate'], r['seed'],
             bool(r.get('refined'))) for r in read_results(path)}


def append_row(path: str, row: Dict) -> None:
    """One JSON line, written with a single ``write`` (lanes share it)."""
    with open(path, 'a') as f:
        f.write(json.dumps(row) + '\n')


def run_ablation(*, config_dir: str = 'projects/mini_world/configs',
                 root: str = DEFAULT_ROOT,
                 work_root: str = 'work_dirs/ablation',
                 rates: Sequence[float] = (0.0, 0.3, 0.6),
                 seeds: Sequence[int] = (0, 1, 2),
                 variants: Iterable[str] = DEFAULT_VARIANTS,
                 max_epochs: Optional[int] = None,
                 refined: bool = False, amp: Optional[str] = None,
                 log=print) -> List[Dict]:
    """Train and test every (variant, rate, seed) not yet in the results.

    Runs on the world prepared at ``root`` as it is (its seed, CLIP and
    sizes from ``world.json``); it never prepares or rebuilds anything.
    Rows go to ``<work_root>/results.jsonl`` with the world's name.
    ``refined`` trains on the SynC-refined pairs
    (``projects/mini_world/tools/refine.py`` writes them); ``amp`` ('bfloat16')
    trains and tests under autocast (rows carry ``amp``; a work root
    holding rows of another precision is refused).
    """
    variants = list(variants)
    world = load_world(root)
    check_world_has(world, rates, variants)
    for rate in rates if refined else ():
        if not osp.isfile(refined_annotation(world, rate)):
            raise FileNotFoundError(
                f'{refined_annotation(world, rate)} not found; refine the '
                'world first: `python projects/mini_world/tools/refine.py '
                f'--root {root} --rates {rate}`')
    name = world.get('name', 'world')
    out = osp.join(work_root, 'results.jsonl')
    other = {r.get('amp') for r in read_results(out)} - {amp}
    if other:
        # A cell's key and work directory do not name the precision.
        raise ValueError(
            f'{out} holds rows trained with amp={sorted(map(str, other))}, '
            f'this sweep runs amp={amp}: give it its own --work-root')
    os.makedirs(work_root, exist_ok=True)
    for seed in seeds:
        for rate in rates:
            for variant in variants:
                # The upper bound does not depend on the defect rate.
                cell_rate = None if variant == 'real' else rate
                key = (name, variant, cell_rate, seed, refined)
                if key in finished_cells(out):
                    continue
                cfg = variant_config(config_dir, world, variant, rate=rate,
                                     seed=seed, work_root=work_root,
                                     max_epochs=max_epochs, refined=refined,
                                     amp=amp)
                claim = CellClaim(cfg.work_dir)
                if not claim.acquire():
                    log(f'[ablation] {key}: another lane runs it, skipped')
                    continue
                if key in finished_cells(out):  # finished while we looked
                    claim.release()
                    continue
                try:
                    start = time.time()
                    metrics = train_and_test(cfg)
                    append_row(out, dict(
                        world=name, world_seed=world['settings']['seed'],
                        variant=variant, refined=refined, rate=cell_rate,
                        seed=seed, seconds=round(time.time() - start, 1),
                        **(dict(amp=amp) if amp else {}),
                        **{SCALE_KEY: evaluator_scale(cfg)},
                        **{k: float(v) for k, v in metrics.items()}))
                finally:
                    claim.release()
    return read_results(out)


def label(row: Dict) -> str:
    """A row's name in the tables: its variant, ``+sync`` when refined."""
    return row['variant'] + ('+sync' if row.get('refined') else '')


def _labels(rows: List[Dict]) -> List[str]:
    present = {label(r) for r in rows}
    return [name for v in VARIANTS for name in (v, f'{v}+sync')
            if name in present]


def _rates(rows: List[Dict]) -> List[float]:
    return sorted({r['rate'] for r in rows if r['rate'] is not None})


def summarize(rows: List[Dict], keys: Sequence[str] = ('CIDEr', 'Bleu_4')
              ) -> str:
    """A markdown table: mean ± std over seeds, ×100, per variant and rate."""
    rates = _rates(rows)
    head = '| variant | ' + ' | '.join(
        f'{k} @ {rate}' for rate in rates for k in keys) + ' |'
    lines = [head, '|' + ' --- |' * (1 + len(rates) * len(keys))]
    for name in _labels(rows):
        cells = [_mean_std(list(_by_seed(rows, name, rate, key).values()))
                 for rate in rates for key in keys]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def gaps(rows: List[Dict], reference: str = 'base',
         key: str = 'CIDEr') -> str:
    """A markdown table of each variant's gain over ``reference``, ×100.

    The cells are paired by seed: a variant and the reference trained with
    the same seed share their initial weights (the mix-up's own modules are
    initialised off the global RNG stream), data order and every dropout
    and noise draw, so each seed gives one difference ``d_s``. A cell is
    ``mean(d) ± sd(d) / sqrt(n)`` over the seeds both have (n >= 2).
    """
    pairs = [(name, reference) for name in _labels(rows)
             if name != reference]
    return _gain_table(rows, pairs, f'{key} gain over {reference} (paired '
                       'by seed)', key)


def sync_gains(rows: List[Dict], key: str = 'CIDEr') -> str:
    """Each refined variant's gain over the same variant unrefined, paired
    by seed (as :func:`gaps`); empty when nothing was refined."""
    names = _labels(rows)
    pairs = [(name, name[:-len('+sync')]) for name in names
             if name.endswith('+sync') and name[:-len('+sync')] in names]
    if not pairs:
        return ''
    return _gain_table(rows, pairs, f'{key} gain of SynC refinement (paired '
                       'by seed)', key)


def _gain_table(rows: List[Dict], pairs: Sequence[tuple], title: str,
                key: str) -> str:
    rates = _rates(rows)
    lines = [f'| {title} | ' + ' | '.join(f'@ {rate}' for rate in rates) +
             ' |', '|' + ' --- |' * (1 + len(rates))]
    for name, reference in pairs:
        cells = []
        for rate in rates:
            a = _by_seed(rows, name, rate, key)
            b = _by_seed(rows, reference, rate, key)
            diffs = [a[s] - b[s] for s in sorted(a.keys() & b.keys())]
            if len(diffs) < 2:
                cells.append('–')
                continue
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            cells.append(f'{statistics.mean(diffs):+.1f} ± {se:.1f} '
                         f'(n={len(diffs)})')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _by_seed(rows: List[Dict], name: str, rate: float,
             key: str) -> Dict[int, float]:
    """``seed -> value ×100`` of one cell (``real`` counts at every rate)."""
    return {r['seed']: paper_scale(r, key) for r in rows
            if label(r) == name and r['rate'] in (rate, None) and key in r}


def _mean_std(values: List[float]) -> str:
    if not values:
        return '–'
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return (f'{statistics.mean(values):.1f} ± '
            f'{statistics.stdev(values):.1f} (n={len(values)})')
