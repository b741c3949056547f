"""Follow one mini-world training run epoch by epoch (collapse diagnosis).

    python projects/mini_world/tools/trace_training.py \\
        projects/mini_world/configs/pcm_shapes.py \\
        --root data/mini_world --rate 0.3 --seed 2 \\
        --work-dir work_dirs/trace/full_s2
    # the same run without CapDec noise, or with the textual tokens zeroed:
    python projects/mini_world/tools/trace_training.py \\
        projects/mini_world/configs/pcm_shapes.py \\
        --seed 2 --work-dir work_dirs/trace/full_s2_nonoise \\
        --set model.mixup.noise_var=0
    python projects/mini_world/tools/trace_training.py \\
        projects/mini_world/configs/pcm_shapes.py \\
        --seed 2 --work-dir work_dirs/trace/full_s2_zero --zero-textual

Trains the config on the world's synthetic set of ``--rate`` with a
checkpoint every epoch (unless they exist), then prints and writes
(``trace.json``) per epoch: teacher-forced loss on real validation renders
and on synthetic training samples, and CIDEr and attribute errors on the
real validation renders with the concept tokens, without them, and with the
training layout (projects/mini_world/pcm_mini_world/trace.py).
"""
import argparse
import ast
import json
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--root', default='data/mini_world')
    parser.add_argument('--rate', type=float, default=0.3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                        help='config overrides (Python literals)')
    parser.add_argument('--zero-textual', action='store_true',
                        help='train and test with the textual tokens zeroed '
                        '(the same as --set model.mixup.zero_textual=True)')
    args = parser.parse_args(argv)
    from mmengine.runner import Runner

    import pcm_plugin  # noqa: F401
    from pcm_plugin.evaluation.caption_metric import PAPER_SCALE
    from projects.mini_world.pcm_mini_world.runs import world_config
    from projects.mini_world.pcm_mini_world.trace import (
        summarize_trace,
        trace_run,
    )
    from projects.mini_world.pcm_mini_world.world import load_world, synth_name
    try:
        world = load_world(args.root)
    except FileNotFoundError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    cfg = world_config(args.config, world, work_dir=args.work_dir,
                       train_set=synth_name(args.rate), seed=args.seed)
    for item in args.set:
        key, value = item.split('=', 1)
        cfg.merge_from_dict({key: ast.literal_eval(value)})
    if args.zero_textual:
        # In the config, so the run's dumped config (and tools/test.py on
        # its checkpoints) builds the same model.
        cfg.merge_from_dict({'model.mixup.zero_textual': True})
    epochs = list(range(1, cfg.train_cfg.max_epochs + 1))
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
    cfg.train_cfg.val_interval = cfg.train_cfg.max_epochs + 1  # no val
    if not all(osp.isfile(osp.join(args.work_dir, f'epoch_{e}.pth'))
               for e in epochs):
        Runner.from_cfg(cfg.copy()).train()
    rows = trace_run(cfg, args.work_dir, epochs=epochs,
                     world_root=world['root'])
    with open(osp.join(args.work_dir, 'trace.json'), 'w') as f:
        json.dump(dict(config=args.config, seed=args.seed, rate=args.rate,
                       overrides=args.set, zero_textual=args.zero_textual,
                       world=world.get('name'), metric_scale=PAPER_SCALE,
                       rows=rows), f, indent=1)
    print(summarize_trace(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
