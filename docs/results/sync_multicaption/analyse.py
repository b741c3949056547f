"""The plan's table (PLAN.md): full+sync − full CIDEr in the world with
five captions per scene, paired by training seed, and the refinement
report's pair counts.

    python docs/results/sync_multicaption/analyse.py \
        docs/results/sync_multicaption/rows.jsonl \
        docs/results/sync_multicaption/refine_report_d060.json
"""
import argparse
import json
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('rows')
    parser.add_argument('report')
    args = parser.parse_args()
    with open(args.rows, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f if line.strip()]
    cider = {(bool(r.get('refined')), r['seed']): r['CIDEr'] for r in rows
             if r['variant'] == 'full' and r['rate'] == 0.6}
    seeds = sorted(s for refined, s in cider if refined
                   and (False, s) in cider)
    gains = [cider[True, s] - cider[False, s] for s in seeds]
    print('| seed | full | full+sync | gain |\n|---|---|---|---|')
    for s, gain in zip(seeds, gains):
        print(f'| {s} | {cider[False, s]:.1f} | {cider[True, s]:.1f} | '
              f'{gain:+.1f} |')
    if len(gains) > 1:
        se = statistics.stdev(gains) / len(gains) ** 0.5
        print(f'\nfull+sync − full: {statistics.fmean(gains):+.1f} ± '
              f'{se:.1f} (mean ± s.e., n={len(gains)} paired seeds)')
    with open(args.report, encoding='utf-8') as f:
        report = json.load(f)
    print('\nrefinement report:')
    print(json.dumps(report, indent=1)[:3000])


if __name__ == '__main__':
    main()
