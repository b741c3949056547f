"""Caption images with a trained PCM-Net checkpoint.

    python tools/caption_image.py configs/pcm_coco.py best.pth a.jpg b.png
    python tools/caption_image.py CONFIG CKPT photos/*.jpg --out captions.json
    python tools/caption_image.py RELEASE_FOLDER photos/*.jpg

The CLIP that extracted the training features is read from the config's
``clip_model`` (override with --clip-model/--clip-checkpoint/--pretrained).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools._cli import (  # noqa: E402  the tools' start-up
    add_trust_checkpoint_arg,
    positive_int,
)

# pcm_plugin is imported after parse_args: --help and argument errors
# answer at once (tools/_cli.py says why).


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the model config, or a released '
                        'model folder (tools/publish_model.py)')
    parser.add_argument('files', nargs='+', metavar='CHECKPOINT IMAGE',
                        help='the checkpoint (.pth/.safetensors; none with a '
                        'released model folder), then image files or '
                        'folders of images')
    parser.add_argument('--clip-model', help='open_clip model name')
    parser.add_argument('--clip-checkpoint', help='local open_clip weights')
    parser.add_argument('--pretrained', help='cached open_clip tag')
    parser.add_argument('--model-config', help='custom open_clip JSON')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--beam-size', type=positive_int)
    parser.add_argument('--batch-size', type=positive_int, default=16)
    parser.add_argument('--out', help='write {image: caption} JSON here '
                        '({image: {caption, concepts}} with --concepts)')
    parser.add_argument('--concepts', action='store_true',
                        help='also print the concepts PCM retrieved for '
                        'each image')
    parser.add_argument('--skip-bad', action='store_true',
                        help='caption the readable images and report (and '
                        'count) the unreadable ones instead of stopping')
    add_trust_checkpoint_arg(parser)
    args = parser.parse_args(argv)
    from pcm_plugin.apis.release import is_release
    from pcm_plugin.cli.launch import INPUT_ERRORS
    from pcm_plugin.utils.fileio import check_writable_output
    if is_release(args.config):
        args.checkpoint, args.images = None, args.files
    else:
        args.checkpoint, args.images = args.files[0], args.files[1:]
    if not args.images:
        parser.error('no image files given')
    from collections import Counter

    from pcm_plugin.clip.image_io import (
        describe_skipped,
        expand_image_inputs,
        split_readable,
    )
    left_out = Counter()
    images, bad = split_readable(expand_image_inputs(args.images, left_out))
    if not images and not bad:
        sys.exit(f'error: no image to caption in {" ".join(args.images)}'
                 + (f': {describe_skipped(left_out)}' if left_out else ''))
    if bad and not args.skip_bad:
        sys.exit('error: ' + '; '.join(f'{p}: {why}' for p, why in bad[:5])
                 + (f' (and {len(bad) - 5} more)' if len(bad) > 5 else '')
                 + '. Fix or leave them out, or pass --skip-bad')
    if args.out:
        try:
            check_writable_output(args.out)
        except OSError as err:  # no folder, or not a regular file
            sys.exit(f'error: {err}')
    from pcm_plugin.apis import PCMCaptionInferencer
    if args.trust_checkpoint:
        from pcm_plugin.engine.checkpoint import trust_checkpoints
        trust_checkpoints()
    try:
        inferencer = PCMCaptionInferencer(
            args.config, args.checkpoint, clip_model=args.clip_model,
            clip_checkpoint=args.clip_checkpoint,
            clip_pretrained=args.pretrained, model_config=args.model_config,
            device=args.device, beam_size=args.beam_size)
    except INPUT_ERRORS as err:
        sys.exit(f'error: {err}')
    results = inferencer(images, batch_size=args.batch_size,
                         return_concepts=args.concepts)
    out = {}
    for result in results:
        image = result['image']
        out[image] = result['pred_caption']
        extra = ''
        if 'concepts' in result:
            out[image] = dict(caption=result['pred_caption'],
                              concepts=result['concepts'])
            extra = f'\t[{", ".join(result["concepts"])}]'
        print(f'{image}\t{result["pred_caption"]}{extra}')
    if bad:
        print(f'skipped {len(bad)} unreadable image(s): ' + ', '.join(
            p for p, _ in bad), file=sys.stderr)
    if left_out:
        print(describe_skipped(left_out), file=sys.stderr)
    if args.out:
        from pcm_plugin.utils.fileio import atomic_write_json
        atomic_write_json(args.out, out)


if __name__ == '__main__':
    main()
