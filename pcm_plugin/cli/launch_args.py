"""The argument sets of ``tools/train.py`` and ``tools/test.py``
(mmpretrain's, plus ours).

Standard library only: the tools load this file before the package
(``tools/_cli.py``: importing ``pcm_plugin`` costs seconds), so that
``--help`` and argument errors answer at once. :mod:`.launch` re-exports
it for everything else.
"""
import argparse
from typing import Any, Optional


class CfgOptionsAction(argparse.Action):
    """mmengine's ``DictAction`` (``key=value`` pairs into one dict),
    imported only when ``--cfg-options`` is given: mmengine is one of the
    imports ``--help`` should not wait for."""

    def __call__(self, parser: argparse.ArgumentParser,
                 namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        from mmengine.config import DictAction
        DictAction(self.option_strings, self.dest, nargs=self.nargs)(
            parser, namespace, values, option_string)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options both tools take (mmpretrain's, plus
    ``--no-pin-memory`` and ``--trust-checkpoint``)."""
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config keys, e.g. model.mixup.top_k=3 '
        'train_dataloader.batch_size=16')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm',
                                               'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--no-pin-memory', action='store_true')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='allow full unpickling of a checkpoint that needs it (it can '
        'run code from the file: only for files you trust). Without it such '
        'files are refused; mmengine checkpoints do not need it')


def add_amp_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--amp`` and ``--amp-dtype`` (:mod:`pcm_plugin.engine.amp`)."""
    parser.add_argument('--amp', action='store_true',
                        help=f'{what} under autocast in --amp-dtype (mixed '
                        'precision)')
    parser.add_argument(
        '--amp-dtype', choices=['bfloat16', 'float16'], default=None,
        help='bfloat16 (default; CPU or GPU) or float16 (CUDA only, with '
        'dynamic loss scaling in training)')


def train_arg_parser() -> argparse.ArgumentParser:
    """The parser of ``tools/train.py``."""
    parser = argparse.ArgumentParser(description='Train a PCM-Net captioner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given')
    add_amp_args(parser, 'train')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--auto-scale-lr', action='store_true')
    parser.add_argument('--no-persistent-workers', action='store_true')
    add_common_args(parser)
    return parser


def test_arg_parser() -> argparse.ArgumentParser:
    """The parser of ``tools/test.py``."""
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
    add_amp_args(parser, 'test')
    add_common_args(parser)
    return parser
