"""Prepare the embedded mini world (cached; a progress bar per step).

    python tools/mini_world/prepare.py                       # defect rate 0.3
    python tools/mini_world/prepare.py --defect-rates 0 0.3 0.6 --real-train

Builds ``data/mini_world/``: captions and annotation files, real val/test
renders, synthetic training renders per defect rate, the mini CLIP, CLIP
feature stores, the concept bank and the caption tokenizer. Steps whose
``done.json`` matches the settings are skipped; see
``pcm_plugin/mini_world/prepare.py`` for the layout.
"""
import argparse
import json
import os
import os.path as osp
import sys

os.environ.setdefault('HF_HUB_OFFLINE', '1')
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    from pcm_plugin.mini_world.mini_clip import CLIP_KINDS
    from pcm_plugin.mini_world.prepare import WorldSettings
    d = WorldSettings()
    parser = argparse.ArgumentParser(
        description='Build (or reuse) the mini world data directory.')
    parser.add_argument('--root', default=d.root,
                        help=f'data directory (default {d.root})')
    parser.add_argument('--seed', type=int, default=d.seed)
    parser.add_argument('--num-train', type=int, default=d.num_train,
                        help='training captions = synthetic images')
    parser.add_argument('--num-val', type=int, default=d.num_val)
    parser.add_argument('--num-test', type=int, default=d.num_test)
    parser.add_argument('--refs', type=int, default=d.refs,
                        help='reference captions per val/test image (1-7)')
    parser.add_argument('--defect-rates', type=float, nargs='+',
                        default=d.defect_rates,
                        help='one synthetic training set per rate')
    parser.add_argument('--real-train', action='store_true',
                        help='also build the train-on-real-renders set')
    parser.add_argument('--clip', default=d.clip, choices=sorted(CLIP_KINDS),
                        help='which committed mini CLIP sees the world: '
                        '`localized` (patch tokens name their objects, as '
                        'PCM-Net assumes; default) or `weak` (class-token '
                        'training only: the weakly-localized world)')
    parser.add_argument('--rebuild', action='store_true',
                        help='replace a different world prepared at --root '
                        '(without it, that is refused)')
    parser.add_argument('--clip-config', default=None,
                        help='mini CLIP config JSON (overrides --clip)'),
    parser.add_argument('--clip-checkpoint', default=None,
                        help='mini CLIP weights (default: committed)')
    parser.add_argument('--batch-size', type=int, default=d.batch_size,
                        help='feature extraction batch size')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.mini_world.prepare import WorldSettings, prepare_world
    if not 1 <= args.refs <= 7:
        print(f'error: --refs {args.refs}: the templates give 1-7 distinct '
              'references per image', file=sys.stderr)
        return 2
    settings = WorldSettings(
        root=args.root, seed=args.seed, num_train=args.num_train,
        num_val=args.num_val, num_test=args.num_test, refs=args.refs,
        defect_rates=list(args.defect_rates), real_train=args.real_train,
        clip=args.clip, clip_config=args.clip_config,
        clip_checkpoint=args.clip_checkpoint,
        batch_size=args.batch_size)
    try:
        world = prepare_world(settings, progress=not args.no_progress,
                              rebuild=args.rebuild)
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(json.dumps(world['seconds']))
    print(f'wrote {osp.join(world["root"], "world.json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
