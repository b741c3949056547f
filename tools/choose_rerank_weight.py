"""Choose the CLIP re-ranker's fusion weight on the val split.

    python tools/choose_rerank_weight.py CONFIG CKPT --out choice.json
    python tools/choose_rerank_weight.py RELEASE --val-ann ... # a release
    python tools/choose_rerank_weight.py RUN/pcm_shapes.py RUN/epoch_12.pth \\
        --val-ann WORLD/corpus/annotations/val.json \\
        --val-features WORLD/features/val \\
        --val-gt WORLD/corpus/annotations/val_gt.json

Decodes val once, keeping every image's W final beams, scores each
candidate's CIDEr once, then picks the (w, a) of the grid with the best
val CIDEr by re-scoring those numbers (pcm_plugin/apis/rerank_weight.py).
Prints the grid and the ``tools/test.py --cfg-options`` that switch the
re-ranker on with the chosen values. The CLIP is the config's
``clip_model`` (the one that extracted the features) unless the config
sets ``model.reranker``. Test files are refused: w is never chosen on test.
"""
import argparse
import os.path as osp
import shlex
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools._cli import (  # noqa: E402  the tools' start-up
    add_trust_checkpoint_arg,
    positive_int,
)

# pcm_plugin is imported after parse_args: --help and argument errors
# answer at once (tools/_cli.py says why).


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the trained model\'s config (e.g. '
                        'the dump in its work dir), or a release (folder '
                        'or .safetensors)')
    parser.add_argument('checkpoint', nargs='?',
                        help='its checkpoint (a release brings its own)')
    parser.add_argument('--val-ann', help='val annotation file (where the '
                        'config has no val_dataloader, or to override it)')
    parser.add_argument('--val-features', help='val feature store')
    parser.add_argument('--val-gt', help='val COCO-format caption gt')
    parser.add_argument('--num-candidates', type=positive_int,
                        help='W, the beams kept (default: the config\'s '
                        'model.reranker, else CLIPReranker\'s)')
    parser.add_argument('--weights', type=float, nargs='+',
                        help='the w grid (default 0, 0.05, ..., 1)')
    parser.add_argument('--length-penalties', type=float, nargs='+',
                        help='the a grid (default 0 1)')
    parser.add_argument('--prompt', help='text before each candidate for '
                        'the CLIP text tower (default none)')
    parser.add_argument('--batch-size', type=positive_int)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', help='write the choice and the grid here '
                        '(JSON)')
    add_trust_checkpoint_arg(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from pcm_plugin.apis import rerank_weight
    from pcm_plugin.cli import launch
    from pcm_plugin.utils.fileio import (
        atomic_write_json,
        check_writable_output,
    )
    grids = {key: value for key, value in (
        ('weights', args.weights),
        ('length_penalties', args.length_penalties)) if value is not None}
    with launch.errors_as_one_line(None):
        if args.trust_checkpoint:
            from pcm_plugin.engine.checkpoint import trust_checkpoints
            trust_checkpoints()
        if args.out:
            check_writable_output(args.out)
        choice = rerank_weight.choose_rerank_weight(
            args.config, args.checkpoint, val_ann=args.val_ann,
            val_features=args.val_features, val_gt=args.val_gt,
            num_candidates=args.num_candidates, prompt=args.prompt,
            batch_size=args.batch_size, device=args.device, **grids)
    print('length_penalty  weight  val CIDEr  mean cos  changed')
    for row in choice['grid']:
        print(f'{row["length_penalty"]:14g}  {row["weight"]:6g}  '
              f'{row["CIDEr"]:9.2f}  {row["mean_cos"]:8.4f}  '
              f'{row["changed"]:7.1%}')
    options = choice['cfg_options']
    print(f'chosen on val ({choice["val_gt"]}): weight={choice["weight"]:g} '
          f'length_penalty={choice["length_penalty"]:g} '
          f'(W={choice["num_candidates"]}, val CIDEr '
          f'{choice["CIDEr"]:.2f})')
    print('test with: python tools/test.py '
          + ' '.join(shlex.quote(a) for a in (
              args.config, *filter(None, [args.checkpoint]),
              *(['--cfg-options', *options] if options else []))))
    if args.out:
        atomic_write_json(args.out, choice)


if __name__ == '__main__':
    main()
