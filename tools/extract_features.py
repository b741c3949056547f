"""Extract PCM-Net CLIP features of images into a feature store
(docs/method.md §2.2).

    python tools/extract_features.py data/coco/annotations/train.json \\
        --image-dir data/coco/sd/images --out-dir data/coco/features/train \\
        --clip-model ViT-B-32 --clip-checkpoint checkpoints/ViT-B-32.pt
    torchrun --nproc_per_node 8 tools/extract_features.py ... (same args)

Writes ``index.json`` + ``shard-*.{ids.json,patch.npy,global.npy,cos.npy}``
(docs/architecture.md). Rerunning the same command resumes. See
docs/data_tools_images.md.
"""
import argparse
import json
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tools._cli import add_clip_args, positive_int  # noqa: E402


def pool_arg(value: str):
    """``'auto'`` or a positive integer."""
    if value == 'auto':
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f'{value!r}: auto or an integer')
    return int(value)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Images -> open_clip patch tokens (before ln_post) and '
        'global embeddings in a sharded fp16 feature store, plus the CLIP '
        'image-caption cosine of train pairs; torchrun-sharded, resumable.')
    parser.add_argument('ann_file', nargs='?',
                        help='annotation JSON (train, val or test; '
                        'docs/architecture.md); not needed with --merge-only')
    parser.add_argument('--image-dir',
                        help='image root: <image_id>.png|.jpg|.jpeg, or the '
                        'entry\'s file_name relative to it')
    parser.add_argument('--out-dir', required=True,
                        help='feature store directory')
    add_clip_args(parser, 'open_clip model name, e.g. ViT-B-32, ViT-L-14')
    parser.add_argument('--pool', default='auto', type=pool_arg,
                        help='average-pool the patch grid by this factor; '
                        'auto = 2 for 16x16 grids (ViT-L/14), else 1')
    parser.add_argument('--batch-size', type=positive_int, default=64)
    parser.add_argument('--shard-size', type=positive_int, default=2048,
                        help='images per shard (the resume unit)')
    parser.add_argument('--workers', type=int, default=4,
                        help='image decoding worker processes per rank')
    parser.add_argument('--device', default=None,
                        help='torch device (default: cuda:<LOCAL_RANK> if '
                        'available, else cpu)')
    parser.add_argument('--dtype', choices=('fp32', 'fp16', 'bf16'),
                        default='fp32', help='model precision')
    parser.add_argument('--skip-bad', action='store_true',
                        help='log and count missing/corrupt/huge images '
                        'instead of stopping')
    parser.add_argument('--max-pixels', type=int, default=89_478_485,
                        help='larger images are bad input (decompression-'
                        'bomb guard; 0 = no limit; default: PIL\'s)')
    parser.add_argument('--merge-only', action='store_true',
                        help='only write index.json from complete shards')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if not args.merge_only:
        missing = [name for name, value in (
            ('ann_file', args.ann_file), ('--image-dir', args.image_dir),
            ('--clip-model', args.clip_model)) if not value]
        if not (args.clip_checkpoint or args.pretrained):
            missing.append('--clip-checkpoint or --pretrained')
        if missing:
            parser.error(f'missing: {", ".join(missing)}')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    # Our own progress notes at INFO; libraries (open_clip) at WARNING.
    logging.basicConfig(level=logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('pcm_plugin').setLevel(logging.INFO)
    from pcm_plugin.data_prep.extraction import (
        extract_features,
        merge_index,
    )
    from pcm_plugin.data_prep.sharding import dist_env
    try:
        if args.merge_only:
            index = merge_index(args.out_dir)
            print(f'wrote {args.out_dir}/index.json: {index["num_items"]} '
                  f'items in {len(index["shards"])} shards')
            return
        summary = extract_features(
            args.ann_file, image_dir=args.image_dir, out_dir=args.out_dir,
            clip_model=args.clip_model, clip_checkpoint=args.clip_checkpoint,
            pretrained=args.pretrained, model_config=args.model_config,
            cache_dir=args.cache_dir, pool=args.pool,
            batch_size=args.batch_size,
            shard_size=args.shard_size, workers=args.workers,
            device=args.device, dtype=args.dtype, skip_bad=args.skip_bad,
            max_pixels=args.max_pixels, progress=not args.no_progress)
    except (ValueError, OSError) as err:  # bad input, missing files, ENOSPC
        sys.exit(f'error: {err}')
    if dist_env()[0] == 0:
        print(f'extracted {summary["extracted"]}, skipped existing '
              f'{summary["skipped_existing"]}, skipped bad '
              f'{summary["skipped_bad"]} in {summary["seconds"]:.1f} s '
              f'({summary["images_per_s"]:.1f} images/s); store: '
              f'{summary["out_dir"]} ({summary["num_items"]} items)')
        print('summary: ' + json.dumps(summary))


if __name__ == '__main__':
    main()
