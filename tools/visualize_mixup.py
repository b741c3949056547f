"""Draw which patches PCM mixed on an image, and with which concepts.

    python tools/visualize_mixup.py CONFIG CKPT a.jpg b.png --out-dir figs
    python tools/visualize_mixup.py RELEASE_FOLDER photos/ --out-dir figs

Each image gives ``<out-dir>/<name>_mixup.png``: CLIP's centre crop with
its patch grid, every mixed patch tinted and labelled with its concept,
the caption and the retrieved concepts below.
"""
import argparse
import os.path as osp
import sys
from collections import Counter

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the model config, or a released '
                        'model folder')
    parser.add_argument('files', nargs='+', metavar='CHECKPOINT IMAGE',
                        help='the checkpoint (none with a release), then '
                        'image files or folders')
    parser.add_argument('--out-dir', default='work_dirs/mixup_figures')
    parser.add_argument('--clip-checkpoint', help='local open_clip weights')
    parser.add_argument('--model-config', help='custom open_clip JSON')
    args = parser.parse_args(argv)
    from pcm_plugin.apis import PCMCaptionInferencer, is_release
    from pcm_plugin.cli.launch import INPUT_ERRORS
    from pcm_plugin.clip.image_io import (
        describe_skipped,
        expand_image_inputs,
    )
    from pcm_plugin.visualization import save_mixup_figures
    if is_release(args.config):
        checkpoint, images = None, args.files
    else:
        checkpoint, images = args.files[0], args.files[1:]
    left_out = Counter()
    images = expand_image_inputs(images, left_out)
    if left_out:
        print(describe_skipped(left_out), file=sys.stderr)
    if not images:
        parser.error('no image files given')
    try:
        inferencer = PCMCaptionInferencer(
            args.config, checkpoint, clip_checkpoint=args.clip_checkpoint,
            model_config=args.model_config)
        for path in save_mixup_figures(inferencer, images, args.out_dir):
            print(path)
    except INPUT_ERRORS as err:
        sys.exit(f'error: {err}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
