"""Convert an official PCM-Net checkpoint (X-modaler .pth) into a release.

    python tools/convert_official_checkpoint.py OFFICIAL.pth vocabulary.txt \
        coco400_embeddings_ViT-B32_with_ensemble.pickle \
        releases/pcm-net_vit-b32_coco.safetensors --config configs/pcm_coco.py

The official file is loaded without executing code (pass --trust-checkpoint
only for a file you trust if it needs full unpickling). Every tensor is
renamed to this plugin's modules and the vocabulary rows are re-laid for
the ids this plugin reserves ([UNK], [PAD]); the release (a folder, or one
.safetensors file usable as mmpretrain.get_model('pcm-net_vit-b32_coco',
pretrained=...)) is built back and compared before it is written.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools._cli import add_trust_checkpoint_arg  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='the official .pth')
    parser.add_argument('vocabulary', help="its vocabulary.txt (one word "
                        "per line, official ids 1, 2, ...)")
    parser.add_argument('concept_bank', help='its concept bank: the '
                        'official .pickle or this plugin\'s .npz')
    parser.add_argument('out', help='release folder, or OUT.safetensors')
    parser.add_argument('--config', required=True,
                        help='the architecture: configs/pcm_coco.py, '
                        'configs/pcm_coco_vitl14.py, configs/pcm_flickr.py '
                        'or configs/pcm_flickr_vitl14.py')
    parser.add_argument('--name', help="the release's name")
    add_trust_checkpoint_arg(parser)
    args = parser.parse_args(argv)
    from pcm_plugin.apis.official import convert_official_checkpoint
    from pcm_plugin.cli.launch import INPUT_ERRORS
    from pcm_plugin.engine.checkpoint import trust_checkpoints
    if args.trust_checkpoint:
        trust_checkpoints()
    try:
        manifest = convert_official_checkpoint(
            args.checkpoint, args.vocabulary, args.concept_bank, args.out,
            config=args.config, name=args.name)
    except INPUT_ERRORS as err:
        sys.exit(f'error: {err}')
    print(f'converted {args.checkpoint} -> {args.out} ({manifest["name"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
