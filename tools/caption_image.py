"""Caption images with a trained PCM-Net checkpoint.

    python tools/caption_image.py configs/pcm_coco.py best.pth a.jpg b.png
    python tools/caption_image.py CONFIG CKPT photos/*.jpg --out captions.json

The CLIP that extracted the training features is read from the config's
``clip_model`` (override with --clip-model/--clip-checkpoint/--pretrained).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
os.environ.setdefault('HF_HUB_OFFLINE', '1')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--clip-model', help='open_clip model name')
    parser.add_argument('--clip-checkpoint', help='local open_clip weights')
    parser.add_argument('--pretrained', help='cached open_clip tag')
    parser.add_argument('--model-config', help='custom open_clip JSON')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--beam-size', type=int)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--out', help='write {image: caption} JSON here')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='allow full unpickling of a checkpoint that needs it (it can '
        'run code from the file: only for files you trust). Without it such '
        'files are refused; mmengine checkpoints do not need it')
    args = parser.parse_args()
    from pcm_plugin.apis import ImageCaptioner
    if args.trust_checkpoint:
        from pcm_plugin.engine.checkpoint import trust_checkpoints
        trust_checkpoints()
    captioner = ImageCaptioner(
        args.config, args.checkpoint, clip_model=args.clip_model,
        clip_checkpoint=args.clip_checkpoint, pretrained=args.pretrained,
        model_config=args.model_config, device=args.device,
        beam_size=args.beam_size)
    captions = captioner(args.images, batch_size=args.batch_size)
    for image, caption in zip(args.images, captions):
        print(f'{image}\t{caption}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(zip(args.images, captions)), f, indent=1)


if __name__ == '__main__':
    main()
