# Copyright (c) pcm_plugin authors. MIT licence.
"""Caption CSV or COCO caption JSON -> annotation files, split by image.

Examples::

    # Flickr8k layout: CSV `image,caption` with a header
    python tools/data/convert_captions.py \\
        ../shared/data/flickr8k/captions.txt --out data/flickr8k \\
        --split 0.9,0.05,0.05 --seed 0
    # official COCO caption format
    python tools/data/convert_captions.py captions_val2014.json \\
        --out data/coco_val --image-prefix val2014/ --split rest,500,500

The split is seeded and by image: all captions of an image land in the
same split, and no image is in two splits.
"""
import argparse
import os.path as osp
import sys
from typing import TYPE_CHECKING

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

import tools._cli  # noqa: E402,F401  the tools' start-up

if TYPE_CHECKING:
    from pcm_plugin.data_prep.bad_input import BadInputPolicy


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an `image,caption` CSV (Flickr8k captions.txt) '
        'or a COCO caption JSON into train/val/test annotation files and '
        'COCO-format ground truth, with a seeded split by image.')
    parser.add_argument('caption_file', help='CSV (.csv/.txt) or COCO JSON')
    parser.add_argument('--out', required=True,
                        help='dataset root; files go to OUT/annotations/')
    parser.add_argument('--format', default='auto',
                        choices=['auto', 'csv', 'coco'],
                        help='input format (auto: .json -> coco, else csv)')
    parser.add_argument('--dataset', default=None,
                        help='name stored in metainfo (default: the name of '
                        'the folder holding the caption file)')
    parser.add_argument('--split', default='0.9,0.05,0.05',
                        help='train,val,test as fractions (0.9,0.05,0.05) or '
                        'image counts with at most one `rest` '
                        '(rest,1000,1000); default 0.9,0.05,0.05')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the split (default 0)')
    parser.add_argument('--image-dir', default=None,
                        help='if given, every image named must exist here')
    parser.add_argument('--image-prefix', default='',
                        help='COCO: prefix for file_name, e.g. val2014/')
    parser.add_argument('--image-id', default='auto',
                        choices=['auto', 'stem', 'last', 'first', 'index'],
                        help='CSV: integer image id from the file name: the '
                        'whole stem, the digits after the last `_`, before '
                        'the first `_` (Flickr8k: the Flickr photo id), or '
                        'the 1-based sorted index; auto = first that is '
                        'unique for all images')
    parser.add_argument('--duplicates', default='error',
                        choices=['error', 'skip', 'keep'],
                        help='CSV: a row repeating an earlier image+caption '
                        '(error, skip and count, or keep as a caption); '
                        'Flickr8k has 10 such rows')
    parser.add_argument('--train-id-start', type=int, default=None,
                        help='first synthetic image id (default: the '
                        'official data\'s, pcm_plugin.data_prep.annotations.'
                        'TRAIN_ID_START)')
    parser.add_argument('--skip-bad', action='store_true',
                        help='skip and count bad rows/images instead of '
                        'stopping at the first one')
    return parser.parse_args(argv)


def read_images(args: argparse.Namespace, policy: 'BadInputPolicy'):
    from pcm_plugin.data_prep.caption_readers import (
        read_caption_csv,
        read_coco_captions,
    )
    fmt = args.format
    if fmt == 'auto':
        fmt = 'coco' if args.caption_file.endswith('.json') else 'csv'
    if fmt == 'coco':
        images = read_coco_captions(args.caption_file, policy=policy,
                                    image_dir=args.image_dir,
                                    image_prefix=args.image_prefix,
                                    progress=True)
        return images, 'COCO image id'
    images, rule = read_caption_csv(
        args.caption_file, policy=policy, image_dir=args.image_dir,
        duplicates=args.duplicates, image_id=args.image_id, progress=True)
    return images, f'from file names ({rule})'


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.data_prep.annotations import (
        TRAIN_ID_START,
        parse_split_spec,
        split_by_image,
        split_summary,
        write_annotation_files,
    )
    from pcm_plugin.data_prep.bad_input import BadInputError, BadInputPolicy
    policy = BadInputPolicy(skip_bad=args.skip_bad)
    if args.train_id_start is None:
        args.train_id_start = TRAIN_ID_START
    dataset = args.dataset or osp.basename(
        osp.dirname(osp.abspath(args.caption_file)))
    try:
        spec = parse_split_spec(args.split)
        images, id_rule = read_images(args, policy)
        splits = split_by_image(images, spec, seed=args.seed)
        written = write_annotation_files(
            args.out, splits, dataset=dataset,
            source=osp.basename(args.caption_file),
            train_id_start=args.train_id_start)
    except (BadInputError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(split_summary(splits, args.train_id_start))
    print(f'split {args.split} by image, seed {args.seed}; image ids: '
          f'{id_rule}; {policy.summary()}')
    for kind, path in written.items():
        print(f'wrote {kind:<8} {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
