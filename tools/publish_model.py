"""Turn a training checkpoint into a released model folder (safetensors).

    python tools/publish_model.py CONFIG CHECKPOINT OUT_DIR [--with-clip]
    python tools/publish_model.py CONFIG CHECKPOINT OUT.safetensors

A config with a CLIP re-ranker (``model.reranker``) is published
``--with-clip`` (the release re-ranks on its own) or
``--without-reranker`` (plain beam search); otherwise it is refused.

A folder holds the weights as safetensors (nothing is unpickled when it is
loaded), the config, tokenizer, concept bank and CLIP head; a
``.safetensors`` path gives one file with all of it (tokenizer and bank as
tensors, the config in the metadata). Either is loaded back and compared
tensor by tensor before it is moved into place. Use it with ``tools/test.py
RELEASE``, ``tools/caption_image.py RELEASE images...``,
``ImageCaptioner(RELEASE)`` or, for one file, ``mmpretrain.get_model(
'pcm-net_vit-b32_coco', pretrained='OUT.safetensors')``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools._cli import add_trust_checkpoint_arg  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the training config')
    parser.add_argument('checkpoint', help='a checkpoint of that config')
    parser.add_argument('out_dir', help='the release folder to create, or '
                        'OUT.safetensors for a one-file release')
    parser.add_argument('--name', help="the model's name (default: the "
                        "folder's)")
    parser.add_argument('--with-clip', action='store_true',
                        help='also copy the open_clip files named by '
                        'clip_model, so captioning raw images needs '
                        'nothing else (and the CLIP of model.reranker: a '
                        'model that re-ranks with CLIP needs it)')
    parser.add_argument('--without-reranker', action='store_true',
                        help="leave the config's model.reranker out: the "
                        'release captions by plain beam search (and needs '
                        'no --with-clip)')
    parser.add_argument('--metrics', help='a metrics JSON (tools/test.py '
                        '--out) to record in release.json')
    add_trust_checkpoint_arg(parser)
    args = parser.parse_args(argv)
    from pcm_plugin.apis.release import publish_model
    from pcm_plugin.cli.launch import INPUT_ERRORS
    from pcm_plugin.engine.checkpoint import trust_checkpoints
    if args.trust_checkpoint:
        trust_checkpoints()
    try:
        metrics = None
        if args.metrics:
            with open(args.metrics) as f:
                metrics = json.load(f)
        manifest = publish_model(args.config, args.checkpoint, args.out_dir,
                                 name=args.name, with_clip=args.with_clip,
                                 with_reranker=not args.without_reranker,
                                 metrics=metrics)
    except INPUT_ERRORS as err:
        sys.exit(f'error: {err}')
    files = manifest.get('files') or [osp.basename(args.out_dir)]
    print(f'released {manifest["name"]} to {args.out_dir}: '
          + ', '.join(files))
    return 0


if __name__ == '__main__':
    sys.exit(main())
