# Copyright (c) pcm_plugin authors. MIT licence.
"""Karpathy-split JSON -> the project's annotation files.

Example::

    python tools/data/convert_karpathy.py data/dataset_coco.json \\
        --out data/coco

writes ``data/coco/annotations/{train,val,test}.json`` (train: one entry per
caption with a synthetic image id 6000000, 6000001, ...) and
``{val,test}_gt.json`` (COCO caption format for the metric).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

import tools._cli  # noqa: E402,F401  the tools' start-up


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a Karpathy-split JSON (dataset_coco.json, '
        'dataset_flickr30k.json) into train/val/test annotation files and '
        'COCO-format ground truth (JSON, no pickle).')
    parser.add_argument('karpathy_json', help='the Karpathy-split JSON')
    parser.add_argument('--out', required=True,
                        help='dataset root; files go to OUT/annotations/')
    parser.add_argument('--dataset', default=None,
                        help='name stored in metainfo (default: from the '
                        'file name, e.g. coco, flickr30k)')
    parser.add_argument('--restval', default='train',
                        choices=['train', 'val', 'test', 'drop'],
                        help='where `restval` images go (default: train, '
                        'the Karpathy convention)')
    parser.add_argument('--image-id', default='auto',
                        choices=['auto', 'cocoid', 'imgid', 'stem'],
                        help='evaluation image id: cocoid, imgid or the '
                        'numeric file stem (auto: cocoid if present, else '
                        'stem if numeric, else imgid)')
    parser.add_argument('--train-id-start', type=int, default=None,
                        help='first synthetic image id (default: the '
                        'official data\'s, pcm_plugin.data_prep.annotations.'
                        'TRAIN_ID_START)')
    parser.add_argument('--skip-bad', action='store_true',
                        help='skip and count bad entries instead of '
                        'stopping at the first one')
    return parser.parse_args(argv)


def dataset_name(path: str) -> str:
    stem = osp.splitext(osp.basename(path))[0]
    return stem[len('dataset_'):] if stem.startswith('dataset_') else stem


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.data_prep.annotations import (
        TRAIN_ID_START,
        split_summary,
        write_annotation_files,
    )
    from pcm_plugin.data_prep.bad_input import BadInputError, BadInputPolicy
    from pcm_plugin.data_prep.caption_readers import read_karpathy
    policy = BadInputPolicy(skip_bad=args.skip_bad)
    if args.train_id_start is None:
        args.train_id_start = TRAIN_ID_START
    try:
        splits, rule = read_karpathy(args.karpathy_json, policy=policy,
                                     restval=args.restval,
                                     image_id=args.image_id, progress=True)
        written = write_annotation_files(
            args.out, splits,
            dataset=args.dataset or dataset_name(args.karpathy_json),
            source=osp.basename(args.karpathy_json),
            train_id_start=args.train_id_start)
    except (BadInputError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(split_summary(splits, args.train_id_start))
    print(f'image ids: {rule} (restval -> {args.restval}); '
          f'{policy.summary()}')
    for kind, path in written.items():
        print(f'wrote {kind:<8} {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
