"""Diagnose a prepared mini world, independently of PCM-Net.

    python projects/mini_world/tools/diagnose.py        # data/mini_world
    python projects/mini_world/tools/diagnose.py --alpha 2.0 --json diag.json

Prints, per synthetic training set, the CLIP image-caption cosine and the
mean CLIP-weighted-loss sample weight by defect type (does the weighted loss
see the defects?), the CIDEr of a nearest-neighbour captioner trained on
each set (what do the synthetic style and the defects cost?), and where the
mix-up's selected (patch, concept) pairs land on the real test renders
(does PCM find the salient objects?).
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
    parser.add_argument('--root', default='data/mini_world')
    parser.add_argument('--alpha', type=float, default=2.5,
                        help='CLIP-weighted loss scale (configs: 2.5)')
    parser.add_argument('--json', help='also write the numbers here')
    args = parser.parse_args(argv)
    # pcm_plugin only now: --help answers at once (tools/_cli.py says why).
    from projects.mini_world.pcm_mini_world.diagnostics import (
        defect_cosines,
        mixup_localisation,
        nearest_neighbour_cider,
        synthetic_sets,
    )
    cosines = {name: defect_cosines(args.root, name, alpha=args.alpha)
               for name in synthetic_sets(args.root)}
    print(f'| set | pairs | n | CLIP cosine mean ± std | weight (alpha '
          f'{args.alpha}) |\n| --- | --- | --- | --- | --- |')
    for name, groups in cosines.items():
        for kind, g in groups.items():
            print(f'| {name} | {kind} | {g["n"]} | {g["mean"]:.3f} ± '
                  f'{g["std"]:.3f} | {g["weight"]:.3f} |')
    cider = nearest_neighbour_cider(args.root)
    print('\n| nearest-neighbour captioner trained on | CIDEr (real test) |'
          '\n| --- | --- |')
    for name, value in cider.items():
        print(f'| {name} | {value:.1f} |')
    where = mixup_localisation(args.root)
    print('\n| mix-up pairs (real test renders) | share | patch on an object '
          '| on a matching object (background: off all objects) |'
          '\n| --- | --- | --- | --- |')
    for kind in ('shape', 'colour', 'background'):
        w = where[kind]
        print(f'| {kind} concept | {w["share"]:.1%} | {w["on_object"]:.1%} '
              f'| {w["on_match"]:.1%} |')
    print(f'| (chance: patches on an object) | | '
          f'{where["object_patches"]:.1%} | |')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(dict(alpha=args.alpha, cosines=cosines,
                           nearest_neighbour_cider=cider,
                           mixup_localisation=where), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
