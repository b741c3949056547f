"""The embedded demo: PCM-Net end to end on the mini world, on CPU.

    python projects/mini_world/tools/demo.py            # what `make demo` runs
    python projects/mini_world/tools/demo.py --smoke    # a 1-minute version
    python projects/mini_world/tools/demo.py --retrain  # train again

(--smoke is what the tests run; --retrain trains even if a run is cached.)
Prepares data/mini_world (cached), trains
projects/mini_world/configs/pcm_shapes.py on synthetic renders, tests on
real renders, prints BLEU-4 / METEOR / ROUGE-L / CIDEr and writes
work_dirs/demo/test_predictions.png.
"""
import argparse
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin, tools._cli and
# projects.mini_world import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config',
                        default='projects/mini_world/configs/pcm_shapes.py')
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--retrain', action='store_true')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny world and 1 epoch: checks that every '
                        'step runs, the numbers mean nothing')
    args = parser.parse_args(argv)
    from projects.mini_world.pcm_mini_world.demo import run_demo
    from projects.mini_world.pcm_mini_world.world import WorldSettings
    if args.smoke:
        settings = WorldSettings(root=args.data_root or
                                 'data/mini_world_smoke', num_train=256,
                                 num_val=16, num_test=16)
        epochs = args.epochs or 1
        work_dir = args.work_dir or 'work_dirs/demo_smoke'
    else:
        settings = WorldSettings(root=args.data_root or 'data/mini_world')
        epochs, work_dir = args.epochs, args.work_dir or 'work_dirs/demo'
    run_demo(config=args.config, work_dir=work_dir, settings=settings,
             max_epochs=epochs, retrain=args.retrain)
    return 0


if __name__ == '__main__':
    sys.exit(main())
