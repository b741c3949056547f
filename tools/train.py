"""Train a PCM-Net captioner (mmpretrain's tools/train.py argument set).

    python tools/train.py configs/pcm_coco.py [--work-dir DIR] [--resume]
    bash tools/dist_train.sh configs/pcm_coco.py 8
"""
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# Offline by default (set before any Hugging Face library is imported).
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

from tools._cli import light_module  # noqa: E402

# The parser without the package (importing it costs seconds), so that
# --help and argument errors answer at once; pcm_plugin after parse_args.
launch_args = light_module('cli.launch_args')


def main(argv=None) -> None:
    args = launch_args.train_arg_parser().parse_args(argv)
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
