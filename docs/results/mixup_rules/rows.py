"""The rows ``analyse.py`` reads: this work root's cells, then issue 28's
``base``/``full`` cells that were not retrained here (README.md, the
deviation). A cell in both must be identical in every metric, or this
stops: the reuse rests on that reproduction.

Usage::

    python docs/results/mixup_rules/rows.py \
        [--here work_dirs/mixup_rules/results.jsonl] \
        [--issue28 docs/results/prefix_host_mini_world.jsonl] \
        > docs/results/mixup_rules/rows.jsonl
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
from projects.mini_world.pcm_mini_world.ablation import (  # noqa: E402
    read_results,
)

REUSED_VARIANTS = ('base', 'full')
RATES = (0.3, 0.6)
METRICS = ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'ROUGE_L', 'CIDEr')


def cell(row: Dict) -> Tuple:
    return (row['world'], row['variant'], row['rate'], row['seed'],
            bool(row.get('refined')))


def merge(here: List[Dict], issue28: List[Dict]) -> List[Dict]:
    """``here`` then the reusable rows of ``issue28`` it lacks."""
    mine = {cell(r): r for r in here}
    merged = list(here)
    for row in issue28:
        if row['variant'] not in REUSED_VARIANTS or row['rate'] not in RATES:
            continue
        twin = mine.get(cell(row))
        if twin is None:
            merged.append(row)
            continue
        differ = [m for m in METRICS if twin[m] != row[m]]
        if differ:
            raise SystemExit(
                f'cell {cell(row)} does not reproduce issue 28 ({differ}): '
                'the reuse of its rows does not hold; retrain as PLAN.md '
                'says')
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--here', default='work_dirs/mixup_rules/'
                        'results.jsonl')
    parser.add_argument('--issue28', default='docs/results/'
                        'prefix_host_mini_world.jsonl')
    args = parser.parse_args()
    for path in (args.here, args.issue28):
        if not osp.isfile(path):
            raise SystemExit(f'{path} not found: give its path with --here '
                             'or --issue28')
    for row in merge(read_results(args.here), read_results(args.issue28)):
        sys.stdout.write(json.dumps(row) + '\n')


if __name__ == '__main__':
    main()
