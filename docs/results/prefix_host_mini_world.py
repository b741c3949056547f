"""Issue 28's table: does PCM + the CLIP-weighted loss help the second host
(PrefixLMCaptioner) where it helps the first (PCMCaptioner)?

Declared before the rows came in: both hosts' Base and full arms at defect
rate 0.6 in the weak world (weak-seed0, 24,000 scenes, the v3 budget of 4
epochs), training seeds 0-4, all four arms run in the same session on the
same code. Per host, the gain full - Base is paired by training seed
(mean ± standard error over seeds); the difference of the two hosts' gains
is paired by seed too. CIDEr ×100 on the 1,000 real test renders.
The localized world (localized-seed0, same size, budget and rate) gets the
same analysis, on its own (rows of one world are paired only with rows of
that world). Rate 0.3 in both worlds (declared 2026-12-07, before its
rows: the same arms, seeds, budget and code, all twenty cells of a world
in one session) gets the same analysis, each (world, rate) on its own.

    python docs/results/prefix_host_mini_world.py \
        docs/results/prefix_host_mini_world.jsonl
"""
import json
import statistics
import sys

HOSTS = {'PCMCaptioner': ('base', 'full'),
         'PrefixLMCaptioner': ('prefix_base', 'prefix_full')}


def mean_se(values):
    mean = statistics.fmean(values)
    se = (statistics.stdev(values) / len(values) ** 0.5
          if len(values) > 1 else float('nan'))
    return mean, se


def main(path: str) -> None:
    with open(path, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for world in ('weak-seed0', 'localized-seed0'):
        for rate in (0.3, 0.6):
            cider = {(r['variant'], r['seed']): r['CIDEr'] for r in rows
                     if r['rate'] == rate and r['world'] == world}
            if cider:
                print(f'\n## {world}, defect rate {rate}\n')
                report_world(cider)


def report_world(cider) -> None:
    print('| host | arm | CIDEr per seed | mean ± std |')
    print('|---|---|---|---|')
    gains = {}
    for host, arms in HOSTS.items():
        for arm in arms:
            values = [cider[arm, s] for s in range(5) if (arm, s) in cider]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f'| {host} | {arm} | '
                  f'{", ".join(f"{v:.1f}" for v in values)} | '
                  f'{statistics.fmean(values):.1f} ± {spread:.1f} |')
        base, full = arms
        gains[host] = {s: cider[full, s] - cider[base, s] for s in range(5)
                       if (base, s) in cider and (full, s) in cider}
    print('\n| paired by seed | seeds | per seed | mean ± s.e. |')
    print('|---|---|---|---|')
    for host, by_seed in gains.items():
        mean, se = mean_se(list(by_seed.values()))
        print(f'| {host} full − Base | {sorted(by_seed)} | '
              f'{", ".join(f"{v:+.1f}" for v in by_seed.values())} | '
              f'{mean:+.1f} ± {se:.1f} |')
    both = sorted(set(gains['PCMCaptioner']) & set(gains['PrefixLMCaptioner']))
    diff = [gains['PrefixLMCaptioner'][s] - gains['PCMCaptioner'][s]
            for s in both]
    if diff:
        mean, se = mean_se(diff)
        print(f'| prefix gain − PCMCaptioner gain | {both} | '
              f'{", ".join(f"{v:+.1f}" for v in diff)} | '
              f'{mean:+.1f} ± {se:.1f} |')


if __name__ == '__main__':
    main(sys.argv[1])
