# Copyright (c) pcm_plugin authors. MIT licence.
"""The official PCM-Net release in and out (docs/official_data.md).

Examples::

    # annotation pickles + vocabulary -> annotations/*.json, tokenizer.json
    python tools/data/import_official.py annotations \\
        META_ANNO/mscoco_caption_anno_train.pkl \\
        --vocabulary META_ANNO/vocabulary.txt --split train --out data/coco
    # OpenAI-CLIP-Feature .npz folders (mscoco_sd_feats_sp0..7) -> a store
    torchrun --nproc_per_node 2 tools/data/import_official.py features \\
        data/coco/annotations/train.json \\
        --feats-folder feats/mscoco_sd_feats --out-dir data/coco/features/train
    # SynC's refined set, each record pointed at its new image's folder
    python tools/data/import_official.py sync PCM-Net_pcmnet_...pickle \\
        --original META_ANNO/mscoco_caption_anno_train.pkl \\
        --vocabulary META_ANNO/vocabulary.txt --out data/coco
    # back out: predictions as the official results/<epoch>.json
    python tools/data/import_official.py export results preds.json \\
        --out results/10.json --ann-file data/coco/annotations/test.json

Nothing is executed from a pickle: only numpy's array globals are admitted.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from tools._cli import positive_int  # noqa: E402  the tools' start-up


def _annotations(sub) -> None:
    p = sub.add_parser('annotations', help='an official annotation pickle '
                       '-> annotations/<split>.json and tokenizer.json')
    p.add_argument('pickle', help='mscoco_caption_anno_<split>.pkl, ...')
    p.add_argument('--vocabulary', required=True,
                   help="the release's vocabulary.txt")
    p.add_argument('--split', required=True, choices=('train', 'val', 'test'))
    p.add_argument('--out', required=True, help='dataset root')
    p.add_argument('--dataset', default='coco', help='name in metainfo')


def _sync(sub) -> None:
    p = sub.add_parser('sync', help="SynC's refined pickle -> "
                       'annotations/train_sync.json')
    p.add_argument('pickle', help="SynC's PCM-Net_pcmnet_...pickle")
    p.add_argument('--original', required=True,
                   help='the official train pickle SynC refined')
    p.add_argument('--vocabulary', required=True)
    p.add_argument('--out', required=True, help='dataset root')
    p.add_argument('--score', default='siglip2-cosine',
                   help='siglip2-cosine: clip_cos = clipscore / 5 (the '
                   'SigLIP2 cosine); as-official: / 2.5 (the weight the '
                   'official loss gives the file)')
    p.add_argument('--dataset', default='coco', help='name in metainfo')


def _features(sub) -> None:
    p = sub.add_parser('features', help='official per-image .npz folders -> '
                       'a feature store (torchrun-sharded, resumable)')
    p.add_argument('ann_file', help='an annotation file written by '
                   'this tool (synthetic entries carry split_id)')
    p.add_argument('--feats-folder', required=True,
                   help='the official FEATS_FOLDER; synthetic images are '
                   'read from FEATS_FOLDER_sp<split_id>/<id>.npz')
    p.add_argument('--out-dir', required=True, help='feature store')
    p.add_argument('--shard-size', type=positive_int, default=2048)
    p.add_argument('--max-feat-num', type=positive_int, default=None,
                   help='keep the first rows (the official MAX_FEAT_NUM)')


def _export(sub) -> None:
    p = sub.add_parser('export', help='this plugin\'s data -> the official '
                       'layout')
    kinds = p.add_subparsers(dest='kind', required=True)
    a = kinds.add_parser('annotations', help='train.json -> official '
                         'pickle + vocabulary.txt')
    a.add_argument('ann_file')
    a.add_argument('--tokenizer', required=True)
    a.add_argument('--out-pickle', required=True)
    a.add_argument('--out-vocabulary', required=True)
    a.add_argument('--feature-dir', help='store with the CLIP cosines of '
                   'entries without clip_cos')
    f = kinds.add_parser('features', help='store -> per-image .npz')
    f.add_argument('ann_file')
    f.add_argument('--feature-dir', required=True)
    f.add_argument('--feats-folder', required=True)
    for q in (a, f):
        q.add_argument('--images-per-folder', type=positive_int,
                       default=None,
                       help='synthetic images per _sp<k> folder for entries '
                       'without split_id (default: the official layout\'s, '
                       'pcm_plugin.data_prep.official_data.IMAGES_PER_FOLDER)')
    r = kinds.add_parser('results', help='predictions -> official '
                         'results/<epoch>.json')
    r.add_argument('predictions', help='tools/test.py --out FILE.json')
    r.add_argument('--out', required=True)
    r.add_argument('--ann-file', help='order the captions as its images')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Import the official PCM-Net release (annotation '
        'pickles, OpenAI-CLIP-Feature .npz folders, SynC refined pickles) '
        'and export predictions and data in its layout.')
    sub = parser.add_subparsers(dest='command', required=True)
    for add in (_annotations, _sync, _features, _export):
        add(sub)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Call the package function of the chosen subcommand."""
    from pcm_plugin.data_prep import official_data as data
    from pcm_plugin.data_prep import official_features as feats
    if getattr(args, 'images_per_folder', 0) is None:
        args.images_per_folder = data.IMAGES_PER_FOLDER
    if args.command == 'annotations':
        return data.import_official_annotations(
            args.pickle, args.vocabulary, args.out, split=args.split,
            dataset=args.dataset)
    if args.command == 'sync':
        return data.import_sync_annotations(
            args.pickle, args.original, args.vocabulary, args.out,
            score=args.score, dataset=args.dataset)
    if args.command == 'features':
        return feats.import_official_features(
            args.ann_file, feats_folder=args.feats_folder,
            out_dir=args.out_dir, shard_size=args.shard_size,
            max_feat_num=args.max_feat_num)
    if args.kind == 'annotations':
        return data.export_official_annotations(
            args.ann_file, args.tokenizer, args.out_pickle,
            args.out_vocabulary, feature_dir=args.feature_dir,
            images_per_folder=args.images_per_folder)
    if args.kind == 'features':
        items = data.export_items(args.ann_file,
                                  images_per_folder=args.images_per_folder)
        return dict(files=feats.export_official_features(
            args.feature_dir, items, args.feats_folder))
    return dict(captions=data.export_official_results(
        args.predictions, args.out, ann_file=args.ann_file))


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.data_prep.safe_pickle import UnsafePickleError
    try:
        summary = run(args)
    except (ValueError, OSError, UnsafePickleError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if os.environ.get('RANK', '0') == '0':  # once under torchrun
        print('summary: ' + json.dumps(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())
