"""Generate one synthetic image per training caption (docs/method.md §2.1).

    python tools/synthesize.py data/coco/annotations/train.json \\
        --model-dir checkpoints/stable-diffusion-v1-5 --out-dir data/coco/sd
    torchrun --nproc_per_node 8 tools/synthesize.py ... (same arguments)

Writes ``<out-dir>/images/<image_id>.png`` and ``<out-dir>/manifest.json``
(settings and per-file sha256). Rerunning the same command resumes. See
docs/data_tools_images.md.
"""
import argparse
import json
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools._cli import positive_int  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Captions -> synthetic images with a local diffusers '
        'text-to-image pipeline; sharded over torchrun ranks, resumable.')
    parser.add_argument('ann_file', help='train annotation JSON '
                        '(data_list entries with image_id and caption)')
    parser.add_argument('--model-dir', required=True,
                        help='local diffusers pipeline folder (holds '
                        'model_index.json; SD 1.x/2.x/XL)')
    parser.add_argument('--out-dir', required=True,
                        help='output folder (images/, manifest.json)')
    parser.add_argument('--steps', type=positive_int, default=50,
                        help='denoising steps (default: 50)')
    parser.add_argument('--guidance', type=float, default=7.5,
                        help='classifier-free guidance scale (default: 7.5)')
    parser.add_argument('--size', default=None,
                        help='N or WxH in pixels (default: the pipeline\'s '
                        'native size, e.g. 512 for SD 1.5)')
    parser.add_argument('--seed', type=int, default=0,
                        help='base seed; each caption gets a hash of seed '
                        'and image_id (default: 0)')
    parser.add_argument('--dtype', choices=('fp32', 'fp16', 'bf16'),
                        default='fp32', help='pipeline precision')
    parser.add_argument('--batch-size', type=positive_int, default=1,
                        help='captions per pipeline call; keep it fixed '
                        'when resuming for byte-identical images')
    parser.add_argument('--device', default=None,
                        help='torch device (default: cuda:<LOCAL_RANK> if '
                        'available, else cpu)')
    parser.add_argument('--skip-bad', action='store_true',
                        help='count and skip empty captions instead of '
                        'stopping')
    parser.add_argument('--limit', type=int, default=None,
                        help='only the first N captions (smoke tests)')
    parser.add_argument('--verify-existing', action='store_true',
                        help='check the sha256 of existing images before '
                        'skipping them (default: size check)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # Our own progress notes at INFO; libraries (open_clip) at WARNING.
    logging.basicConfig(level=logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('pcm_plugin').setLevel(logging.INFO)
    from pcm_plugin.data_prep.sharding import dist_env
    from pcm_plugin.data_prep.synthesis import synthesize
    try:
        summary = synthesize(
            args.ann_file, model_dir=args.model_dir, out_dir=args.out_dir,
            steps=args.steps, guidance=args.guidance, size=args.size,
            seed=args.seed, dtype=args.dtype, batch_size=args.batch_size,
            device=args.device, skip_bad=args.skip_bad, limit=args.limit,
            verify_existing=args.verify_existing,
            progress=not args.no_progress)
    except (ValueError, OSError) as err:  # bad input, missing files, ENOSPC
        sys.exit(f'error: {err}')
    if dist_env()[0] == 0:
        print(f'generated {summary["generated"]}, skipped existing '
              f'{summary["skipped_existing"]}, skipped bad '
              f'{summary["skipped_bad"]} in {summary["seconds"]:.1f} s '
              f'({summary["images_per_s"]:.2f} images/s); manifest: '
              f'{summary["manifest"]}')
        print('summary: ' + json.dumps(summary))


if __name__ == '__main__':
    main()
