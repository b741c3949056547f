"""Prepare the embedded mini world (cached; a progress bar per step).

    python projects/mini_world/tools/prepare.py         # defect rate 0.3
    python projects/mini_world/tools/prepare.py --defect-rates 0 0.3 0.6 \
        --real-train
    python projects/mini_world/tools/prepare.py --clip weak \
        --root data/mini_world_weak_c5 --num-train 24000 \
        --captions-per-scene 5 --defect-rates 0.6

Builds ``data/mini_world/``: captions and annotation files, real val/test
renders, synthetic training renders per defect rate, the mini CLIP, CLIP
feature stores, the concept bank and the caption tokenizer. Steps whose
``done.json`` matches the settings are skipped; see
``projects/mini_world/pcm_mini_world/prepare.py`` for the layout.
"""
import argparse
import dataclasses
import json
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))

import tools._cli  # noqa: E402,F401  the tools' start-up
from projects.mini_world.pcm_mini_world.names import (  # noqa: E402
    CLIP_KINDS,
    DEFAULT_ROOT,
)


def parse_args(argv=None) -> argparse.Namespace:
    """The options; world settings not given are absent from the result.

    Their defaults are ``WorldSettings``'s own (applied in :func:`main`,
    after the parser: importing ``WorldSettings`` loads pcm_plugin).
    """
    parser = argparse.ArgumentParser(
        description='Build (or reuse) the mini world data directory.',
        argument_default=argparse.SUPPRESS)
    parser.add_argument('--root',
                        help=f'data directory (default {DEFAULT_ROOT})')
    parser.add_argument('--seed', type=int)
    parser.add_argument('--num-train', type=int,
                        help='training captions = synthetic images')
    parser.add_argument('--num-val', type=int)
    parser.add_argument('--num-test', type=int)
    parser.add_argument('--refs', type=int,
                        help='reference captions per val/test image (1-7)')
    parser.add_argument('--captions-per-scene', type=int,
                        help='training captions per scene, each rendered as '
                        'its own synthetic image with its own defects (1-7, '
                        'default 1; --num-train stays the caption count and '
                        'must be a multiple): SynC\'s premise, as COCO has '
                        '5 captions per image')
    parser.add_argument('--defect-rates', type=float, nargs='+',
                        help='one synthetic training set per rate')
    parser.add_argument('--real-train', action='store_true',
                        help='also build the train-on-real-renders set')
    parser.add_argument('--clip', choices=sorted(CLIP_KINDS),
                        help='which committed mini CLIP sees the world: '
                        '`localized` (patch tokens name their objects, as '
                        'PCM-Net assumes; default) or `weak` (class-token '
                        'training only: the weakly-localized world)')
    parser.add_argument('--rebuild', action='store_true', default=False,
                        help='replace a different world prepared at --root '
                        '(without it, that is refused)')
    parser.add_argument('--clip-config', default=None,
                        help='mini CLIP config JSON (overrides --clip)'),
    parser.add_argument('--clip-checkpoint', default=None,
                        help='mini CLIP weights (default: committed)')
    parser.add_argument('--batch-size', type=int,
                        help='feature extraction batch size')
    parser.add_argument('--no-progress', action='store_true', default=False)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from projects.mini_world.pcm_mini_world.prepare import prepare_world
    from projects.mini_world.pcm_mini_world.world import WorldSettings
    names = {f.name for f in dataclasses.fields(WorldSettings)}
    settings = WorldSettings(**{k: v for k, v in vars(args).items()
                                if k in names})
    if not 1 <= settings.refs <= 7:
        print(f'error: --refs {settings.refs}: the templates give 1-7 '
              'distinct references per image', file=sys.stderr)
        return 2
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
