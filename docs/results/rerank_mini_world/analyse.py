"""The re-ranking plan's table (PLAN.md): paired differences against the
plain beam-3 arm, per world, defect rate and variant, mean ± standard
error over training seeds; and the test-time cost from the tools' logs (the
mean seconds of a test iteration, re-ranked over plain, per checkpoint).

    python docs/results/rerank_mini_world/analyse.py \
        docs/results/rerank_mini_world/rows.jsonl \
        [--runs mini_world_weak_n24k=work_dirs/design_v3_r2/weak-seed0 ...]

(``--runs WORLD=FOLDER``: the cells' folder of each world, for the cost;
a FOLDER alone serves every world.)
"""
import argparse
import glob
import json
import os.path as osp
import re
import statistics


def mean_se(values):
    se = (statistics.stdev(values) / len(values) ** 0.5
          if len(values) > 1 else float('nan'))
    return statistics.fmean(values), se


def test_iteration_seconds(run_dir: str, arm: str) -> float:
    """Mean 'time' of the test iterations logged by tools/test.py."""
    logs = sorted(glob.glob(osp.join(run_dir, f'rerank_{arm}', '*', '*.log')))
    with open(logs[-1], encoding='utf-8') as f:
        times = [float(m) for m in re.findall(
            r'Epoch\(test\).*?\btime: ([0-9.]+)', f.read())]
    return statistics.fmean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('rows')
    parser.add_argument('--runs', nargs='+', default=[],
                        help='WORLD=FOLDER: the cells\' folder of a world, '
                        'for the cost')
    args = parser.parse_args()
    with open(args.rows, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for world, rate in sorted({(r['world'], r['rate']) for r in rows}):
        print(f'\n## {world}, defect rate {rate}\n')
        folders = [run.partition('=')[2] or run for run in args.runs
                   if '=' not in run or run.startswith(world + '=')]
        report_world([r for r in rows
                      if r['world'] == world and r['rate'] == rate], folders)


def report_world(rows, run_folders) -> None:
    by = {(r['variant'], r['seed'], r['arm']): r for r in rows}
    print('| variant | arm | seeds | CIDEr − plain, per seed | mean ± s.e. '
          '| CLIPScore − plain, mean ± s.e. | plain CIDEr, mean |')
    print('|---|---|---|---|---|---|---|')
    for variant in ('base', 'full'):
        seeds = [s for s in range(5) if all(
            (variant, s, a) in by for a in ('plain', 'rerank',
                                            'length_only'))]
        if not seeds:
            continue
        plain = statistics.fmean(by[variant, s, 'plain']['CIDEr']
                                 for s in seeds)
        for arm in ('rerank', 'length_only'):
            cider = [by[variant, s, arm]['CIDEr']
                     - by[variant, s, 'plain']['CIDEr'] for s in seeds]
            clip = [by[variant, s, arm]['CLIPScore']
                    - by[variant, s, 'plain']['CLIPScore'] for s in seeds]
            (cm, cse), (sm, sse) = mean_se(cider), mean_se(clip)
            print(f'| {variant} | {arm} | {seeds} | '
                  f'{", ".join(f"{d:+.1f}" for d in cider)} | '
                  f'{cm:+.1f} ± {cse:.1f} | {sm:+.2f} ± {sse:.2f} | '
                  f'{plain:.1f} |')
    print('\nchosen on val (w, a) per cell:')
    for (variant, seed, arm), row in sorted(by.items()):
        if arm == 'rerank':
            print(f'  {variant} s{seed}: w={row["weight"]}, '
                  f'a={row["length_penalty"]}')
    ratios = []
    for (variant, seed, arm), row in sorted(by.items()):
        runs = [osp.join(folder, row['run']) for folder in run_folders
                if osp.isdir(osp.join(folder, row['run'], 'rerank_plain'))]
        if arm == 'rerank' and runs:
            ratios.append(test_iteration_seconds(runs[0], 'rerank')
                          / test_iteration_seconds(runs[0], 'plain'))
    if ratios:
        print(f'\ntest iteration time, re-ranked (W=5 + CLIP text tower) / '
              f'plain beam-3: median {statistics.median(ratios):.2f}x over '
              f'{len(ratios)} cells (range {min(ratios):.2f}-'
              f'{max(ratios):.2f})')


if __name__ == '__main__':
    main()
