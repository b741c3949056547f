"""Train a PCM-Net captioner (mmpretrain's tools/train.py argument set).

    python tools/train.py configs/pcm_coco.py [--work-dir DIR] [--resume]
    bash tools/dist_train.sh configs/pcm_coco.py 8
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import tools._cli as cli  # noqa: E402  the tools' start-up


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a PCM-Net captioner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given')
    cli.add_amp_args(parser, 'train')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--auto-scale-lr', action='store_true')
    parser.add_argument('--no-persistent-workers', action='store_true')
    cli.add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from pcm_plugin.cli import launch
    from pcm_plugin.engine import batch_rule, work_dir_lock
    with launch.errors_as_one_line(None):
        cfg = launch.merge_train_args(launch.load_config(args), args)
        if os.environ.get('RANK', '0') == '0':  # one lock per run
            work_dir_lock.lock_work_dir(cfg.work_dir)
        rule = batch_rule.apply_batch_rule(cfg, batch_rule.world_size(cfg))
    launch.setup_distributed(cfg)
    try:
        with launch.errors_as_one_line(cfg.work_dir):
            runner = launch.build_runner(cfg)
            runner.logger.info(rule)
            runner.train()
    finally:
        launch.teardown_distributed()
    launch.end_distributed_run()


if __name__ == '__main__':
    main()
