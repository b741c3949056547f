"""The tools' shared start-up, and the argument pieces several tools use.

Every tool's first lines put the clone's root on ``sys.path`` and import
this module; importing it is the start-up: Hugging Face libraries stay
offline unless the user says otherwise, and the pinned stack's known,
harmless warnings are hidden (in this process and the ones it starts).

Standard library only: ``--help`` and argument errors must answer before
torch, mmengine or ``pcm_plugin`` load (importing the package registers its
components, which takes seconds). A tool imports ``pcm_plugin`` after
``parse_args``; where a default or a choice is the package's, the parser
leaves it ``None`` and the package fills it in and checks it. (Not a tool:
``tools/_*`` are helpers.)
"""
import argparse
import os
import re
import warnings
from typing import Any, Optional

# Offline by default, set before any Hugging Face library is imported:
# weights come from local files (the README says how to point at them).
OFFLINE_DEFAULTS = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
                    'TOKENIZERS_PARALLELISM': 'false'}


def positive_int(text: str) -> int:
    """``type=`` of a count that must be at least 1 (a batch size, a shard
    size): 0 or less is an argument error at once, not a division by zero
    or an endless loop later.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number >= 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a whole number') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} is not a positive '
                                         'number (give 1 or more)')
    return value


def add_clip_args(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The open_clip model options shared by the tools that run CLIP:
    ``--clip-model``, its weights (``--clip-checkpoint`` or
    ``--pretrained``), ``--model-config`` and ``--cache-dir``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        model_help (str): Help of ``--clip-model`` (its default differs).
    """
    parser.add_argument('--clip-model', help=model_help)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--clip-checkpoint',
                         help='local open_clip weights file')
    weights.add_argument('--pretrained',
                         help='open_clip pretrained tag whose weights are '
                         'already in the local cache (no download)')
    parser.add_argument('--model-config',
                        help='custom open_clip config JSON (<name>.json '
                        'registers model <name>)')
    parser.add_argument('--cache-dir', help='cache for --pretrained')


# Warnings the pinned stack prints on every run that say nothing about the
# user's run: (message prefix, category). Prefixes hold no ':' or ','
# (PYTHONWARNINGS syntax).
KNOWN_HARMLESS_WARNINGS = (
    ('pkg_resources is deprecated as an API', UserWarning),
    ('Deprecated call to `pkg_resources.declare_namespace', Warning),
    ('Fail to import ``MultiScaleDeformableAttention``', UserWarning),
    ('`broadcast_buffers` is deprecated', FutureWarning),
    ('The prefix is not set in metric class', UserWarning),
    ('`torch.jit.script` is deprecated', DeprecationWarning),
    ('`torch.jit.interface` is deprecated', DeprecationWarning),
)


def quiet_known_warnings() -> None:
    """Hide :data:`KNOWN_HARMLESS_WARNINGS` in this tool's process and the
    processes it starts (torchrun ranks, data workers: through
    ``PYTHONWARNINGS``); every other warning still prints.

    Entry points only: importing the library changes no filter.
    """
    for prefix, category in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings('ignore', message=re.escape(prefix),
                                category=category)
    inherited = [os.environ.get('PYTHONWARNINGS', '')] + [
        f'ignore:{prefix}:{category.__name__}'
        for prefix, category in KNOWN_HARMLESS_WARNINGS]
    os.environ['PYTHONWARNINGS'] = ','.join(filter(None, inherited))


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
    """The options ``tools/train.py`` and ``tools/test.py`` both take
    (mmpretrain's, plus ``--no-pin-memory`` and ``--trust-checkpoint``)."""
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config keys, e.g. model.mixup.top_k=3 '
        'train_dataloader.batch_size=16')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm',
                                               'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--no-pin-memory', action='store_true')
    add_trust_checkpoint_arg(parser)


def add_trust_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``, the one switch that allows full unpickling
    (:func:`pcm_plugin.engine.checkpoint.trust_checkpoints`)."""
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


for _name, _value in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
quiet_known_warnings()
