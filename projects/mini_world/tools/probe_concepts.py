"""Re-test the ablation's PCM models without their concept tokens.

    python projects/mini_world/tools/probe_concepts.py      # after ablation.py

For every finished ``pcm`` / ``full`` cell in work_dirs/ablation/results.jsonl
the same checkpoint is tested on the real test renders with the mix-up off
(``PCMMixup(mode='none')``); results go to work_dirs/ablation/probe.jsonl and
a table is printed: what the appended concept tokens add at inference.
"""
import argparse
import os.path as osp
import statistics
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config-dir', default='projects/mini_world/configs')
    parser.add_argument('--root', default='data/mini_world')
    parser.add_argument('--work-root', default='work_dirs/ablation')
    parser.add_argument('--variants', nargs='+', default=['pcm', 'full'])
    parser.add_argument('--epochs', type=int, default=None,
                        help="the sweep's --epochs (which checkpoint is "
                        'its last)')
    args = parser.parse_args(argv)
    # pcm_plugin only now: --help answers at once (tools/_cli.py says why).
    from projects.mini_world.pcm_mini_world.ablation import paper_scale
    from projects.mini_world.pcm_mini_world.probe import probe_concept_tokens
    rows = probe_concept_tokens(config_dir=args.config_dir, root=args.root,
                                work_root=args.work_root,
                                variants=args.variants,
                                max_epochs=args.epochs)
    print('| variant | rate | seed | CIDEr with concept tokens | without | '
          'difference |\n| --- | --- | --- | --- | --- | --- |')
    for r in sorted(rows, key=lambda r: (r['variant'], r['rate'],
                                         r['seed'])):
        w, wo = paper_scale(r, 'CIDEr_with'), paper_scale(r, 'CIDEr_without')
        print(f'| {r["variant"]} | {r["rate"]} | {r["seed"]} | {w:.1f} | '
              f'{wo:.1f} | {w - wo:+.1f} |')
    diffs = [paper_scale(r, 'CIDEr_with') - paper_scale(r, 'CIDEr_without')
             for r in rows]
    if len(diffs) > 1:
        print(f'\nmean difference {statistics.mean(diffs):+.1f} ± '
              f'{statistics.stdev(diffs):.1f} (std, n={len(diffs)})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
