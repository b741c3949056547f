"""What ``tools/train.py`` and ``tools/test.py`` do around mmengine's Runner.

Mirrors mmpretrain's tools (argument set, work-dir and dataloader defaults)
and adds what a CPU-only machine needs: a gloo process group created before
the Runner (mmengine's own init calls ``torch.cuda.set_device``, which does
not exist in CPU torch), a DDP wrapper without ``device_ids``, and a clean
``destroy_process_group`` at exit (without it torchrun runs sometimes end in
SIGABRT after both ranks finished).

The argument parsers are the tools' own (``tools/train.py``,
``tools/test.py``): they parse before the package loads.
"""
import argparse
import logging
import os
import os.path as osp
import pickle
import sys
import traceback
from contextlib import contextmanager
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import find_latest_checkpoint

import pcm_plugin  # noqa: F401  registers components + ckpt loader
from pcm_plugin.apis.release import names_a_release, resolve_release
from pcm_plugin.datasets.feature_layout import fill_feature_layout
from pcm_plugin.engine.amp import (
    amp_optim_wrapper,
    amp_test_cfg,
    check_amp_dtype,
)
from pcm_plugin.engine.checkpoint import (
    check_checkpoint_matches,
    trust_checkpoints,
)
from pcm_plugin.engine.config_input import (
    TEST_SECTIONS,
    TRAIN_SECTIONS,
    check_override_types,
    read_config,
    require_sections,
)
from pcm_plugin.engine.tool_runner import ToolRunner
from pcm_plugin.utils.fileio import (
    atomic_write_json,
    check_writable_dir,
    check_writable_output,
)


def amp_dtype(args: argparse.Namespace) -> Optional[str]:
    """The autocast dtype ``--amp`` asks for, None without ``--amp``.

    Raises:
        ValueError: ``--amp-dtype`` without ``--amp``, or a dtype this
            machine cannot autocast in.
    """
    if not args.amp:
        if args.amp_dtype:
            raise ValueError(f'--amp-dtype {args.amp_dtype} needs --amp')
        return None
    return check_amp_dtype(args.amp_dtype, cuda=torch.cuda.is_available())


def load_config(args: argparse.Namespace) -> Config:
    """Read the config and apply the CLI overrides common to both tools."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    config = args.config
    if args.trust_checkpoint:  # before a release's files are read
        trust_checkpoints()
    if names_a_release(config):
        config, weights = resolve_release(config)
        if getattr(args, 'checkpoint', 'absent') is None:
            args.checkpoint = weights
    if isinstance(config, str) and not osp.isfile(config):
        raise FileNotFoundError(f'config {config} not found')
    cfg = config if isinstance(config, Config) else read_config(config)
    if args.cfg_options is not None:
        check_override_types(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(
            osp.basename(osp.normpath(args.config)))[0])
    fill_feature_layout(cfg)
    return cfg


def _dataloader_defaults(cfg: Config, key: str, *, pin_memory: bool,
                         persistent_workers: bool = False) -> None:
    loader = cfg.get(key)
    if loader is None:
        return
    loader.setdefault('collate_fn', dict(type='default_collate'))
    loader.setdefault('pin_memory', pin_memory and torch.cuda.is_available())
    # torch refuses persistent workers without workers.
    if loader.get('num_workers', 0) == 0 or not persistent_workers:
        loader['persistent_workers'] = False


def check_resumable(work_dir: str) -> str:
    """The checkpoint ``--resume`` (no path) would continue from.

    mmengine would silently start from scratch when the work dir has no
    checkpoint; a user asking to resume wants to know.

    Raises:
        FileNotFoundError: No ``last_checkpoint`` in ``work_dir``, or it
            names a file that does not exist.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(
            f'--resume: no checkpoint to resume in {work_dir} (no '
            '`last_checkpoint` file); drop --resume to start training, or '
            'pass --resume PATH/TO/CHECKPOINT')
    latest = find_latest_checkpoint(work_dir)
    if not latest or not osp.isfile(latest):
        raise FileNotFoundError(
            f'--resume: {marker} names {latest}, which does not exist; '
            'pass --resume PATH/TO/CHECKPOINT of a checkpoint that does')
    return latest


def merge_train_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``tools/train.py`` flags (same meaning as mmpretrain's)."""
    require_sections(cfg, TRAIN_SECTIONS, 'tools/train.py')
    check_writable_dir(cfg.work_dir, 'work dir (--work-dir or the config\'s '
                       'work_dir)')
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    dtype = amp_dtype(args)
    if dtype:
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, dtype)
    if cfg.get('compile'):
        # Every batch of new captions recompiles the step until dynamo
        # reaches its recompilation limit: a toy run measured many times
        # slower than without compiling (docs/benchmarks/speed.md).
        raise ValueError(
            "cfg.compile (mmengine's) compiles train_step, tokenizer "
            'included, and recompiles for every batch of new captions; '
            'set model.compile_layers=True instead')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
        check_resumable(cfg.work_dir)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such '
                                    'checkpoint')
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _dataloader_defaults(
            cfg, key, pin_memory=not args.no_pin_memory,
            persistent_workers=(key == 'train_dataloader'
                                and not args.no_persistent_workers))
    return cfg


def merge_test_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``tools/test.py`` flags."""
    require_sections(cfg, TEST_SECTIONS, 'tools/test.py')
    check_writable_dir(cfg.work_dir, 'work dir (--work-dir or the config\'s '
                       'work_dir)')
    if args.checkpoint is None:
        raise FileNotFoundError(
            'CHECKPOINT missing: pass the config and a checkpoint, or a '
            'released model folder (tools/publish_model.py) alone')
    cfg.load_from = args.checkpoint
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
    dtype = amp_dtype(args)
    if dtype:
        cfg.test_cfg = amp_test_cfg(cfg.get('test_cfg'), dtype)
    if args.out:  # fail now, not after a whole evaluation
        check_writable_output(args.out)
    if args.out and args.out_item == 'pred':
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        cfg.test_evaluator = list(evaluators) + [
            dict(type='DumpCaptions', out_file=args.out)]
    _dataloader_defaults(cfg, 'test_dataloader',
                         pin_memory=not args.no_pin_memory)
    return cfg


def setup_distributed(cfg: Config) -> None:
    """Prepare CPU DDP: a gloo group and a wrapper without device_ids."""
    if cfg.launcher != 'pytorch':
        return
    if not torch.cuda.is_available():
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
        cfg.env_cfg = ConfigDict(cfg.get('env_cfg', {}))
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', 'CPUCompatDDP'):
        wrapper.update(type='CPUCompatDDP')
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters', False)
        cfg.model_wrapper_cfg = wrapper


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def end_distributed_run() -> None:
    """End a torchrun rank that finished its work, skipping the C++ static
    destructors of interpreter shutdown.

    Now and then a torchrun run (CPU, gloo, two ranks) ended in SIGABRT
    ("terminate called without an active exception") *after* its last log
    line, both ranks done and the process group destroyed: a thread object
    torn down at exit (docs/benchmarks/reliability.md has the count). The
    run's files are written and its log handlers flush every line, so the
    rank leaves with ``os._exit(0)`` once everything is flushed.
    Single-process runs exit normally.
    """
    if 'TORCHELASTIC_RUN_ID' not in os.environ:  # not started by torchrun
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def check_test_checkpoint(runner, checkpoint: str) -> None:
    """Refuse a checkpoint that does not fit the model (``ValueError``):
    mmengine would test the partly loaded model and exit 0."""
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    check_checkpoint_matches(model, checkpoint)


# What bad input raises, from our checks and from mmengine's builders
# (which re-raise a builder's error with the same type and a message
# naming the component): shown as one line, the traceback kept in a file.
# TypeError: a setting of the wrong type in a config file (or a new
# --cfg-options key, which check_override_types cannot compare) fails in
# the component that uses it, e.g. torch's optimizer comparing lr to 0.
# AssertionError: mmengine checks settings with assert (max_epochs an
# integer, clip_grad a dict), its messages naming the setting.
INPUT_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError,
                AssertionError, pickle.UnpicklingError)


@contextmanager
def errors_as_one_line(work_dir: Optional[str]):
    """End the tool with ``error: <message>`` instead of a traceback.

    A misspelled ``type``, a missing or damaged data file, a checkpoint
    that does not fit or a full disk all raise one of :data:`INPUT_ERRORS`
    with a message that names the file or key; the user needs that line,
    not the builders' stack. The full traceback goes to
    ``<work_dir>/error[-rank<r>].log`` (named in the message) for bug
    reports.

    Args:
        work_dir (str, optional): Where the traceback is kept; None before
            the config (which names the work dir) is read: then the line
            alone.
    """
    try:
        yield
    except INPUT_ERRORS as err:
        message = str(err.args[0]) if isinstance(err, KeyError) and \
            err.args else str(err)
        first = ' '.join(message.split()) or type(err).__name__
        if isinstance(err, TypeError):  # e.g. "'<=' not supported between"
            first += ' (a config setting of the wrong type?)'
        sys.exit(f'error: {first}{_keep_traceback(work_dir)}')


def _keep_traceback(work_dir: Optional[str]) -> str:
    """Write the traceback being handled to ``<work_dir>/error[-rank<r>].log``
    and return `` (traceback in <file>)``; ``''`` without a work dir or
    when it cannot be written."""
    if work_dir is None:
        return ''
    rank = os.environ.get('RANK', '0')
    name = 'error.log' if rank == '0' else f'error-rank{rank}.log'
    where = osp.join(work_dir, name)
    try:
        os.makedirs(work_dir, exist_ok=True)
        with open(where, 'w') as f:
            f.write(traceback.format_exc())
    except OSError:
        return ''
    return f' (traceback in {where})'


def build_runner(cfg: Config):
    """:class:`ToolRunner` ``.from_cfg`` (or the configured runner type)."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return ToolRunner.from_cfg(cfg)


def dump_json(obj, path: Optional[str]) -> None:
    """Write ``obj`` to ``path`` (if given) atomically: a full disk or a
    kill leaves the previous file, never half of a new one."""
    if path:
        atomic_write_json(path, obj, indent=2)
