"""The weak-world instrument plan's analysis (PLAN.md beside this file),
committed before any of its rows.

Stage A (Base only, weak world 0): per candidate, Base's CIDEr per seed
and its sample standard deviation at rates 0.3 and 0.6; a candidate is
adopted when both are <= 2.5, the first such in the plan's order (A1,
A2, A3); if none is, the one with the smallest larger-of-the-two stds.

Stage B (the adopted setting, weak worlds 0, 1, 2): per world, Base and
full mean ± std at rates 0, 0.3, 0.6; full - Base paired by training seed
(mean ± s.e.); Base's defect cost, rate 0 - rate 0.6 paired by seed; then
pooled with the world as the unit: the mean of the worlds' paired mean
gains ± the s.e. over worlds. Target: the pooled gain at 0.6 with
s.e. <= 2, whatever its sign.

    python docs/results/weak_instrument/analyse.py \\
        --stage-a A1=docs/results/weak_instrument/a1_rows.jsonl ... \\
        [--stage-b docs/results/weak_instrument/b_rows.jsonl [--worlds ...]]
"""
import argparse
import json
import statistics
from typing import Dict, List, Optional, Tuple

RULE_STD = 2.5  # Base's seed std at both rates, CIDEr
TARGET_SE = 2.0  # the pooled gain's s.e. at rate 0.6
STAGE_A_RATES = (0.3, 0.6)
STAGE_B_RATES = (0.0, 0.3, 0.6)
SEEDS = 5  # training seeds per cell in both stages


def read_rows(path: str) -> List[Dict]:
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def mean_se(values: List[float]) -> Tuple[float, float]:
    se = (statistics.stdev(values) / len(values) ** 0.5
          if len(values) > 1 else float('nan'))
    return statistics.fmean(values), se


def cider_by_seed(rows: List[Dict], *, variant: str, rate: float,
                  world: Optional[str] = None) -> Dict[int, float]:
    """``seed -> CIDEr`` of unrefined cells (one world where given)."""
    return {r['seed']: r['CIDEr'] for r in rows
            if r['variant'] == variant and r['rate'] == rate
            and not r.get('refined') and (world is None or
                                          r['world'] == world)}


def stage_a(candidates: Dict[str, List[Dict]]) -> Optional[str]:
    """Print each candidate's Base stds; return the adopted one."""
    print('## Stage A: Base seed spread in weak world 0\n')
    print('| candidate | rate | CIDEr per seed | mean ± std |')
    print('|---|---|---|---|')
    worst = {}
    for name, rows in candidates.items():
        stds = []
        for rate in STAGE_A_RATES:
            by_seed = cider_by_seed(rows, variant='base', rate=rate)
            values = [by_seed[s] for s in sorted(by_seed)]
            std = statistics.stdev(values) if len(values) > 1 else \
                float('nan')
            stds.append(std if len(values) == SEEDS else float('nan'))
            print(f'| {name} | {rate} | '
                  f'{", ".join(f"{v:.1f}" for v in values)} '
                  f'({len(values)} of {SEEDS}) | '
                  f'{statistics.fmean(values) if values else float("nan"):.1f}'
                  f' ± {std:.1f} |')
        worst[name] = max(stds)  # nan while a rate is incomplete
    complete = {n: w for n, w in worst.items() if w == w}
    adopted = next((n for n, w in complete.items() if w <= RULE_STD), None)
    if adopted:
        print(f'\nadopted: {adopted} (larger std {worst[adopted]:.1f} <= '
              f'{RULE_STD})')
    elif complete and len(complete) == 3:
        adopted = min(complete, key=complete.get)
        print(f'\nno candidate meets std <= {RULE_STD} at both rates; '
              f'stage B runs on {adopted}, the smallest larger std '
              f'({complete[adopted]:.1f})')
    else:
        print(f'\nno decision yet: complete candidates {sorted(complete)} '
              'miss the rule, and the plan has more to try')
    return adopted


def stage_b(rows: List[Dict]) -> None:
    print('\n## Stage B: full − Base across weak worlds\n')
    worlds = sorted({r['world'] for r in rows})
    gains = {rate: {} for rate in STAGE_B_RATES}
    paired = {rate: {} for rate in STAGE_B_RATES}  # world -> seeds paired
    print('| world | rate | Base mean ± std | full mean ± std | full − Base '
          'per seed | mean ± s.e. |')
    print('|---|---|---|---|---|---|')
    for world in worlds:
        for rate in STAGE_B_RATES:
            base = cider_by_seed(rows, variant='base', rate=rate, world=world)
            full = cider_by_seed(rows, variant='full', rate=rate, world=world)
            seeds = sorted(set(base) & set(full))
            if base or full:
                # A world with rows at this rate but no pair yet is still
                # running: it must show as short, not drop out of the pool.
                paired[rate][world] = len(seeds)
            if not seeds:
                continue
            diff = [full[s] - base[s] for s in seeds]
            mean, se = mean_se(diff)
            gains[rate][world] = mean
            print(f'| {world} | {rate} | {spread(base)} | {spread(full)} | '
                  f'{", ".join(f"{d:+.1f}" for d in diff)} | '
                  f'{mean:+.1f} ± {se:.1f} |')
    print('\nBase\'s defect cost (rate 0 − rate 0.6, paired by seed):')
    for world in worlds:
        clean = cider_by_seed(rows, variant='base', rate=0.0, world=world)
        worst = cider_by_seed(rows, variant='base', rate=0.6, world=world)
        seeds = sorted(set(clean) & set(worst))
        if seeds:
            mean, se = mean_se([clean[s] - worst[s] for s in seeds])
            print(f'  {world}: {mean:+.1f} ± {se:.1f} ({len(seeds)} seeds)')
    print('\npooled, the world as the unit (mean ± s.e. over worlds):')
    for rate in STAGE_B_RATES:
        per_world = gains[rate]
        if not per_world:
            continue
        mean, se = mean_se(list(per_world.values()))
        verdict = ''
        short = sorted(w for w, n in paired[rate].items() if n < SEEDS)
        if short:
            # A world still running must not decide the target.
            verdict = f' (provisional: {", ".join(short)} short of ' \
                f'{SEEDS} seeds)'
        elif rate == 0.6 and len(per_world) >= 3:
            verdict = (' (target s.e. <= 2: met)' if se <= TARGET_SE else
                       ' (target s.e. <= 2: not met)')
        print(f'  rate {rate}: {mean:+.1f} ± {se:.1f} over '
              f'{len(per_world)} worlds{verdict}')


def spread(by_seed: Dict[int, float]) -> str:
    values = list(by_seed.values())
    std = statistics.stdev(values) if len(values) > 1 else float('nan')
    return f'{statistics.fmean(values):.1f} ± {std:.1f}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--stage-a', nargs='*', default=[],
                        help='NAME=ROWS for each candidate, in the plan\'s '
                        'order (A1 A2 A3)')
    parser.add_argument('--stage-b', help='the rows of stage B')
    parser.add_argument('--worlds', nargs='*',
                        help='stage B: only these worlds (e.g. weak-seed0 '
                        'weak-seed1 weak-seed2, the three declared ones); '
                        'default all')
    args = parser.parse_args()
    if args.stage_a:
        stage_a({item.partition('=')[0]: read_rows(item.partition('=')[2])
                 for item in args.stage_a})
    if args.stage_b:
        rows = read_rows(args.stage_b)
        if args.worlds:
            unknown = set(args.worlds) - {r['world'] for r in rows}
            if unknown:
                parser.error(f'--worlds: {sorted(unknown)} not in '
                             f'{args.stage_b}')
            rows = [r for r in rows if r['world'] in args.worlds]
        stage_b(rows)


if __name__ == '__main__':
    main()
