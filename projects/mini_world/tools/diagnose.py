"""Diagnose a prepared mini world, independently of PCM-Net.

    python projects/mini_world/tools/diagnose.py        # data/mini_world
    python projects/mini_world/tools/diagnose.py --alpha 2.0 --json diag.json
    # where the pairs of another selection rule land, and nothing else:
    python projects/mini_world/tools/diagnose.py --mixup-only \
        --selection per_concept --excluded-words snow sand sky night grass

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
    parser.add_argument('--selection', default='official',
                        choices=['official', 'per_concept'],
                        help="the mix-up's selection rule (PCMMixup "
                        'selection)')
    parser.add_argument('--excluded-words', nargs='*', default=[],
                        metavar='WORD', help='words retrieved but never '
                        'written (PCMMixup excluded_words)')
    parser.add_argument('--mixup-only', action='store_true',
                        help='only where the mix-up pairs land (skip the '
                        'cosines and the nearest-neighbour captioner)')
    args = parser.parse_args(argv)
    # pcm_plugin only now: --help answers at once (tools/_cli.py says why).
    from projects.mini_world.pcm_mini_world.diagnostics import (
        defect_cosines,
        mixup_localisation,
        nearest_neighbour_cider,
        synthetic_sets,
    )
    cosines, cider = {}, {}
    if not args.mixup_only:
        cosines = {name: defect_cosines(args.root, name, alpha=args.alpha)
                   for name in synthetic_sets(args.root)}
        print(f'| set | pairs | n | CLIP cosine mean ± std | weight (alpha '
              f'{args.alpha}) |\n| --- | --- | --- | --- | --- |')
        for name, groups in cosines.items():
            for kind, g in groups.items():
                print(f'| {name} | {kind} | {g["n"]} | {g["mean"]:.3f} ± '
                      f'{g["std"]:.3f} | {g["weight"]:.3f} |')
        cider = nearest_neighbour_cider(args.root)
        print('\n| nearest-neighbour captioner trained on | CIDEr (real '
              'test) |\n| --- | --- |')
        for name, value in cider.items():
            print(f'| {name} | {value:.1f} |')
    where = mixup_localisation(args.root, selection=args.selection,
                               excluded_words=args.excluded_words)
    excluded = (f', never writing {" ".join(args.excluded_words)}'
                if args.excluded_words else '')
    print(f'\n| mix-up pairs (real test renders; selection '
          f'{args.selection}{excluded}) | n | share | patch on an object '
          '| on a matching object (background: off all objects) |'
          '\n| --- | --- | --- | --- | --- |')
    for kind in ('shape', 'colour', 'background'):
        w = where[kind]
        print(f'| {kind} concept | {w["n"]} | {w["share"]:.1%} | '
              f'{w["on_object"]:.1%} | {w["on_match"]:.1%} |')
    # Pooled over the kinds: the share of all mixed pairs whose patch is on
    # an object (issue 26 §3's diagnostic), whatever word they write.
    kinds = [where[kind] for kind in ('shape', 'colour', 'background')]
    pairs = sum(w['n'] for w in kinds)
    on_object = sum(w['n'] * w['on_object'] for w in kinds) / max(pairs, 1)
    print(f'| all pairs | {pairs} | 100% | {on_object:.1%} | |')
    print(f'| (chance: patches on an object) | | | '
          f'{where["object_patches"]:.1%} | |')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(dict(alpha=args.alpha, cosines=cosines,
                           nearest_neighbour_cider=cider,
                           selection=args.selection,
                           excluded_words=args.excluded_words,
                           mixup_localisation=where,
                           pairs_on_object=on_object), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
