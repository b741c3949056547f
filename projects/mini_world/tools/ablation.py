"""Paper Table 3 on the mini world: Base / +PCM / +CXE / full (+ real).

    python projects/mini_world/tools/prepare.py --defect-rates 0 0.3 0.6 \
        --real-train
    python projects/mini_world/tools/ablation.py       # 5 seeds x 3 rates
    python projects/mini_world/tools/ablation.py --seeds 0 --rates 0.3 \
        --variants base full
    python projects/mini_world/tools/ablation.py --summary-only  # the tables
    python projects/mini_world/tools/ablation.py --summary-only \
        --plot docs/ablation.png

Runs on the world prepared at --root as it is (never rebuilds it). Results
go to <work-root>/results.jsonl (one line per run with its world's name,
appended as runs finish: rerunning skips finished cells; several lanes may
share one sweep) and the markdown tables to <work-root>/table.md.
"""
import argparse
import os
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))

import tools._cli  # noqa: E402,F401  the tools' start-up
from projects.mini_world.pcm_mini_world.names import (  # noqa: E402
    DEFAULT_ROOT,
    DEFAULT_VARIANTS,
    VARIANTS,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config-dir', default='projects/mini_world/configs',
                        help="where the variants' configs pcm_shapes*.py are")
    parser.add_argument('--root', default=DEFAULT_ROOT,
                        help='a prepared world '
                        '(projects/mini_world/tools/prepare.py)')
    parser.add_argument('--work-root', default='work_dirs/ablation')
    parser.add_argument('--rates', type=float, nargs='+',
                        default=[0.0, 0.3, 0.6])
    parser.add_argument('--seeds', type=int, nargs='+',
                        default=[0, 1, 2, 3, 4])
    parser.add_argument('--variants', nargs='+',
                        default=list(DEFAULT_VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--refined', action='store_true',
                        help='train on the SynC-refined pairs '
                        '(projects/mini_world/tools/refine.py); rows get '
                        'refined=true')
    parser.add_argument('--amp', action='store_true',
                        help='train and test under bfloat16 autocast (rows '
                        'get amp="bfloat16"); one precision per '
                        '--work-root')
    parser.add_argument('--summary-only', action='store_true')
    parser.add_argument('--plot', metavar='PNG',
                        help='also draw CIDEr against the defect rate, one '
                        'panel per world')
    args = parser.parse_args(argv)
    from projects.mini_world.pcm_mini_world.ablation import (
        gaps,
        read_results,
        run_ablation,
        summarize,
        sync_gains,
    )
    if args.summary_only:
        rows = read_results(osp.join(args.work_root, 'results.jsonl'))
    else:
        try:
            rows = run_ablation(
                config_dir=args.config_dir, root=args.root,
                work_root=args.work_root, rates=args.rates, seeds=args.seeds,
                variants=args.variants, max_epochs=args.epochs,
                refined=args.refined,
                amp='bfloat16' if args.amp else None)
        except (FileNotFoundError, ValueError) as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
    tables = []
    for world in sorted({r.get('world', 'world') for r in rows}):
        mine = [r for r in rows if r.get('world', 'world') == world]
        refined = sync_gains(mine)
        tables.append(f'### {world}\n\n{summarize(mine)}\n\n{gaps(mine)}'
                      + (f'\n\n{refined}' if refined else ''))
    text = '\n\n'.join(tables)
    print(text)
    os.makedirs(args.work_root, exist_ok=True)
    with open(osp.join(args.work_root, 'table.md'), 'w') as f:
        f.write(text + '\n')
    if args.plot:
        from projects.mini_world.pcm_mini_world.ablation_plot import (
            plot_ablation,
        )
        plot_ablation(rows, args.plot)
        print(f'plot: {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
