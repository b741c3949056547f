"""Training curves (loss, lr, val CIDEr) of a run as one PNG.

    python tools/analysis/plot_curves.py work_dirs/pcm_coco --out curves.png
    python tools/analysis/plot_curves.py RUN/vis_data/scalars.json \
        --train-keys loss loss_ce clip_cos lr --val-keys CIDEr Bleu_4
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run', help='a work dir or its scalars.json')
    parser.add_argument('--out', default='curves.png')
    parser.add_argument('--train-keys', nargs='+', default=['loss', 'lr'])
    parser.add_argument('--val-keys', nargs='+', default=['CIDEr'])
    args = parser.parse_args(argv)
    from pcm_plugin.visualization.curves import plot_curves
    try:
        keys = plot_curves(args.run, args.out, train_keys=args.train_keys,
                           val_keys=args.val_keys)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'{args.out}: {", ".join(keys)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
