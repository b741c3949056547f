"""The declared analysis of docs/results/mixup_rules/PLAN.md (issue 26 §3).

Written with the plan, before any cell ran; run from the repository root
once the rows exist::

    python docs/results/mixup_rules/analyse.py \
        --rows docs/results/mixup_rules/rows.jsonl \
        --captions docs/results/mixup_rules/seed_noise.jsonl \
        --where docs/results/mixup_rules/where_*.json \
        [--seeds 0 1 2 3 4]

Prints markdown: CIDEr per arm, the paired differences of each rule
against the official rule (``full``) and of every arm against Base, the
shape- and colour-word errors beside them, where each rule's pairs land,
and the verdict on the issue's target. Nothing here chooses anything
after the fact: the arms, worlds, rates and the target are the plan's.
"""
import argparse
import json
import os.path as osp
import re
import statistics
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
from projects.mini_world.pcm_mini_world.ablation import (  # noqa: E402
    paper_scale,
    read_results,
)

ARMS = ('base', 'full', 'full_perconcept', 'full_nostuff')
RULES = ('full_perconcept', 'full_nostuff')
RATES = (0.3, 0.6)
# The target: a rule beats the official one by >= 3 CIDEr in the
# weak world with SE <= 1.5, and loses nothing in the localized world
# (declared: mean + SE >= 0), at both rates.
GAIN, MAX_SE = 3.0, 1.5
# seed_noise.py's keys that are not shares (printed as they are; every
# other key, a recall or share, in points like the errors).
NOT_SHARES = ('mean_words',)


def by_seed(rows: List[Dict], key: str, scale: float = 1.0
            ) -> Dict[Tuple[str, str, float], Dict[int, float]]:
    """``(world, variant, rate) -> {seed: value * scale}``."""
    out: Dict[Tuple[str, str, float], Dict[int, float]] = {}
    for row in rows:
        if key not in row or row.get('refined'):
            continue
        value = (paper_scale(row, key) if key == 'CIDEr'
                 else row[key] * scale)
        out.setdefault((row['world'], row['variant'], row['rate']),
                       {})[row['seed']] = value
    return out


def only_seeds(rows: List[Dict], seeds) -> List[Dict]:
    """The rows of these training seeds (all rows when ``seeds`` is None)."""
    return rows if seeds is None else [r for r in rows if r['seed'] in seeds]


def paired(cells, world: str, arm: str, reference: str,
           rate: float) -> Tuple[float, float, int]:
    """Mean and standard error of ``arm - reference`` over shared seeds."""
    a = cells.get((world, arm, rate), {})
    b = cells.get((world, reference, rate), {})
    diffs = [a[s] - b[s] for s in sorted(a.keys() & b.keys())]
    if len(diffs) < 2:
        return float('nan'), float('nan'), len(diffs)
    return (statistics.mean(diffs),
            statistics.stdev(diffs) / len(diffs) ** 0.5, len(diffs))


def spread(values: Dict[int, float]) -> str:
    if len(values) < 2:
        return '–'
    v = list(values.values())
    return f'{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f} (n={len(v)})'


def gain(cells, world, arm, reference, rate) -> str:
    mean, se, n = paired(cells, world, arm, reference, rate)
    return '–' if n < 2 else f'{mean:+.1f} ± {se:.1f} (n={n})'


def tables(cells, worlds: List[str], title: str) -> List[str]:
    lines = []
    for world in worlds:
        lines += [f'\n#### {title}: {world}\n',
                  '| arm | ' + ' | '.join(f'@ {r}' for r in RATES) + ' |',
                  '|' + ' --- |' * (1 + len(RATES))]
        for arm in ARMS:
            lines.append(f'| {arm} | ' + ' | '.join(
                spread(cells.get((world, arm, r), {})) for r in RATES) + ' |')
        for arm, reference in [(rule, 'full') for rule in RULES] + [
                (arm, 'base') for arm in ARMS[1:]]:
            lines.append(f'| {arm} − {reference} (paired) | ' + ' | '.join(
                gain(cells, world, arm, reference, r) for r in RATES) + ' |')
    return lines


def where_table(paths: List[str]) -> List[str]:
    """Where each rule's pairs land (tools/diagnose.py --mixup-only JSON,
    named ``where_<world folder>_<rule>.json``)."""
    lines = ['\n#### Where the mixed pairs land (real test renders)\n',
             '| world folder | rule | pairs | on an object | object words '
             '| object word on its object | background words | chance |',
             '|' + ' --- |' * 8]
    for path in sorted(paths):
        name = re.match(r'where_(.+)_(official|per_concept|nostuff)\.json$',
                        osp.basename(path))
        with open(path, encoding='utf-8') as f:
            diag = json.load(f)
        where = diag['mixup_localisation']
        pairs = sum(where[k]['n'] for k in ('shape', 'colour', 'background'))
        objects = where['shape']['share'] + where['colour']['share']
        lines.append(
            f'| {name.group(1)} | {name.group(2)} | {pairs} | '
            f'{diag["pairs_on_object"]:.1%} | {objects:.1%} | '
            f'{where["object_match"]:.1%} | {where["background"]["share"]:.1%}'
            f' | {where["object_patches"]:.1%} |')
    return lines


def verdict(cells, weak: str, localized: str) -> List[str]:
    lines = ['\n#### Target (declared in PLAN.md)\n']
    for rule in RULES:
        weak_ok, local_ok = [], []
        for rate in RATES:
            mean, se, n = paired(cells, weak, rule, 'full', rate)
            weak_ok.append(n >= 2 and mean >= GAIN and se <= MAX_SE)
            mean, se, n = paired(cells, localized, rule, 'full', rate)
            local_ok.append(n >= 2 and mean + se >= 0)
        met = all(weak_ok) and all(local_ok)
        lines.append(
            f'- {rule}: weak world ≥ +{GAIN} with SE ≤ {MAX_SE} at '
            f'{dict(zip(RATES, weak_ok))}; localized world no loss at '
            f'{dict(zip(RATES, local_ok))}: **{"met" if met else "not met"}**')
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', required=True,
                        help="the ablation's results.jsonl")
    parser.add_argument('--captions',
                        help="seed_noise.py's JSON lines (shape errors)")
    parser.add_argument('--where', nargs='*', default=[],
                        help='diagnose.py --mixup-only JSON files')
    parser.add_argument('--weak', default='weak-seed0')
    parser.add_argument('--localized', default='localized-seed0')
    parser.add_argument('--explore', nargs='*', default=[], metavar='KEY',
                        help='with --captions: the same tables for other '
                        "seed_noise.py keys (e.g. background_recall "
                        "mean_words); added after the rows, not declared")
    parser.add_argument('--seeds', type=int, nargs='*',
                        help="only these training seeds (the declared "
                        "extension's n = 5 report: --seeds 0 1 2 3 4)")
    args = parser.parse_args(argv)
    worlds = [args.weak, args.localized]
    rows = only_seeds(read_results(args.rows), args.seeds)
    cider = by_seed(rows, 'CIDEr')
    lines = tables(cider, worlds, 'CIDEr')
    seconds = [r['seconds'] for r in rows if 'seconds' in r]
    if seconds:
        lines.append(f'\ncell cost: {len(seconds)} cells, median '
                     f'{statistics.median(seconds):.0f} s (range '
                     f'{min(seconds):.0f}–{max(seconds):.0f} s)')
    if args.captions:
        captions = only_seeds(read_results(args.captions), args.seeds)
        for key in ('shape_errors', 'colour_errors'):
            lines += tables(by_seed(captions, key, 100.0), worlds,
                            f'{key} (points)')
        for key in args.explore:
            share = key not in NOT_SHARES
            lines += tables(by_seed(captions, key, 100.0 if share else 1.0),
                            worlds, f'{key}{" (points)" if share else ""}, '
                            'exploratory (not declared)')
        # The same checkpoints: seed_noise's CIDEr is the cell's own.
        again = by_seed(captions, 'CIDEr')
        off = [abs(again[k][s] - cider[k][s]) for k in again
               for s in again[k] if s in cider.get(k, {})]
        lines.append(f'\nseed_noise CIDEr vs the cells\' rows: largest '
                     f'difference {max(off, default=float("nan")):.2f}')
    lines += where_table(args.where) if args.where else []
    lines += verdict(cider, args.weak, args.localized)
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
