"""Take the seed spread of an ablation cell apart, checkpoint by checkpoint.

    python projects/mini_world/tools/seed_noise.py --root data/mini_world \
        --variant base --rate 0.3 --seeds 0 1 2 3 4
    # the v3 benchmark's cells (docs/benchmarks/mini_world.md):
    python projects/mini_world/tools/seed_noise.py \
        --root data/mini_world_n24k \
        --work-root work_dirs/design_v3_r2 --epochs 4 --variant full
    # any checkpoint of a config (e.g. a trace_training.py run):
    python projects/mini_world/tools/seed_noise.py \
        --root data/mini_world_weak \
        --config projects/mini_world/configs/pcm_shapes_noam4e.py \
        --checkpoint W/epoch_4.pth

For each finished cell (work_dirs/ablation by default) prints one JSON line:
CIDEr on the world's real test renders, the bootstrap standard deviation
of that score over resampled test sets (test-set sampling noise), colour
and shape errors of the captions, the most frequent caption opening and
the mean caption length (projects/mini_world/pcm_mini_world/trace.py).
"""
import argparse
import ast
import json
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default='data/mini_world')
    parser.add_argument('--work-root', default='work_dirs/ablation')
    parser.add_argument('--config-dir', default='projects/mini_world/configs')
    parser.add_argument('--variant', default='base')
    parser.add_argument('--rate', type=float, default=0.3)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=None,
                        help="the sweep's --epochs (which checkpoint is "
                        'its last)')
    parser.add_argument('--layout', default='append',
                        choices=['append', 'none', 'replace'])
    parser.add_argument('--bootstrap', type=int, default=50)
    parser.add_argument('--config', help='with --checkpoint: analyse this '
                        'checkpoint of this config instead of ablation cells')
    parser.add_argument('--checkpoint')
    parser.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                        help='with --checkpoint: config overrides (Python '
                        'literals), e.g. the settings it was trained with')
    args = parser.parse_args(argv)
    import pcm_plugin  # noqa: F401
    from projects.mini_world.pcm_mini_world.ablation import variant_config
    from projects.mini_world.pcm_mini_world.trace import test_split_analysis
    from projects.mini_world.pcm_mini_world.world import load_world
    world = load_world(args.root)
    if args.checkpoint:
        from projects.mini_world.pcm_mini_world.runs import world_config
        cfg = world_config(
            args.config or 'projects/mini_world/configs/pcm_shapes.py',
            world, work_dir=osp.dirname(args.checkpoint))
        for item in args.set:
            key, value = item.split('=', 1)
            cfg.merge_from_dict({key: ast.literal_eval(value)})
        row = test_split_analysis(cfg, args.checkpoint, world['root'],
                                  layout=args.layout,
                                  bootstrap=args.bootstrap)
        print(json.dumps(dict(world=world.get('name'),
                              checkpoint=args.checkpoint, layout=args.layout,
                              **row)), flush=True)
        return 0
    for seed in args.seeds:
        cfg = variant_config(args.config_dir, world, args.variant,
                             rate=args.rate, seed=seed,
                             work_root=args.work_root,
                             max_epochs=args.epochs)
        checkpoint = osp.join(cfg.work_dir,
                              f'epoch_{cfg.train_cfg.max_epochs}.pth')
        if not osp.isfile(checkpoint):
            print(f'error: {checkpoint} not found: run that cell with '
                  'projects/mini_world/tools/ablation.py first',
                  file=sys.stderr)
            return 1
        row = test_split_analysis(cfg, checkpoint, world['root'],
                                  layout=args.layout,
                                  bootstrap=args.bootstrap)
        print(json.dumps(dict(world=world.get('name'), variant=args.variant,
                              rate=args.rate, seed=seed, layout=args.layout,
                              **row)), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
