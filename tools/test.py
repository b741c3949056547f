"""Evaluate a PCM-Net checkpoint (mmpretrain's tools/test.py argument set).

    python tools/test.py configs/pcm_coco.py work_dirs/pcm_coco/best.pth
    bash tools/dist_test.sh configs/pcm_coco.py CKPT 8 --out results.json
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import tools._cli as cli  # noqa: E402  the tools' start-up


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Evaluate a PCM-Net checkpoint')
    parser.add_argument('config', help='test config file path, or a '
                        'released model folder (tools/publish_model.py)')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file (.pth or .safetensors); '
                        'omitted with a released model folder')
    parser.add_argument('--out', help='JSON file for the metrics, or with '
                        '--out-item pred the captions (COCO results format)')
    parser.add_argument('--out-item', choices=['metrics', 'pred'],
                        default='metrics')
    cli.add_amp_args(parser, 'test')
    cli.add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
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
