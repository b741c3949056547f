"""Train the mini world's CLIP (open_clip model + ClipLoss) from scratch.

    python projects/mini_world/tools/train_mini_clip.py
    # reproduces the committed
    # projects/mini_world/resources/mini_clip/pcm-mini-clip.{json,pt}
    # (tens of minutes on one core; rerun the same command to resume if
    # it gets killed)

Writes ``pcm-mini-clip.json`` (open_clip model config), ``pcm-mini-clip.pt``
(fp16 state dict) and ``pcm-mini-clip.metrics.json`` (loss curves,
image->text retrieval and concept retrieval on held-out scenes, real and
synthetic renders) to ``--out-dir``.
"""
import argparse
import json
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train the mini CLIP.')
    parser.add_argument('--out-dir',
                        default='projects/mini_world/resources/mini_clip')
    parser.add_argument('--steps', type=int, default=None)
    parser.add_argument('--pretrain-steps', type=int, default=None,
                        help='supervised image-tower (shape) steps before '
                        'the ClipLoss phase (default 2500; with 0 this '
                        'small ViT stays blind to shapes)')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--lr', type=float, default=None)
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--dense-weight', type=float, default=None,
                        help='weight of the dense patch-concept term '
                        '(default 0: the weakly-localized recipe)')
    parser.add_argument('--dense-scale', type=float, default=None,
                        help='logit scale of the dense term (default 10)')
    parser.add_argument('--image-concept-weight', type=float, default=None,
                        help='weight of the image-level concept term '
                        '(default 0)')
    parser.add_argument('--init-checkpoint', default=None,
                        help='start from these mini CLIP weights')
    parser.add_argument('--resume-every', type=int, default=None,
                        help='save the training state every N steps; '
                        'rerunning the same command resumes')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from projects.mini_world.pcm_mini_world.mini_clip_train import (
        train_mini_clip,
    )
    overrides = {k: v for k, v in dict(
        steps=args.steps, pretrain_steps=args.pretrain_steps,
        batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, threads=args.threads,
        resume_every=args.resume_every, dense_weight=args.dense_weight,
        dense_scale=args.dense_scale,
        image_concept_weight=args.image_concept_weight,
        init_checkpoint=args.init_checkpoint).items() if v is not None}
    metrics = train_mini_clip(args.out_dir, **overrides)
    print(json.dumps(metrics['eval'], indent=1))
    print(f'trained in {metrics["seconds_this_run"]} s; wrote '
          f'{args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
