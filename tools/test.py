"""Evaluate a PCM-Net checkpoint (mmpretrain's tools/test.py argument set).

    python tools/test.py configs/pcm_coco.py work_dirs/pcm_coco/best.pth
    bash tools/dist_test.sh configs/pcm_coco.py CKPT 8 --out results.json
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
    args = launch_args.test_arg_parser().parse_args(argv)
    from pcm_plugin.cli import launch
    with launch.errors_as_one_line(None):
        cfg = launch.merge_test_args(launch.load_config(args), args)
    launch.setup_distributed(cfg)
    try:
        with launch.errors_as_one_line(cfg.work_dir):
            runner = launch.build_runner(cfg)
            launch.check_test_checkpoint(runner, cfg.load_from)
            metrics = runner.test()
            if args.out and args.out_item == 'metrics':
                launch.dump_json(metrics, args.out)
    finally:
        launch.teardown_distributed()
    launch.end_distributed_run()


if __name__ == '__main__':
    main()
