"""How N processes change the batch, and the learning-rate rule for it.

``tools/train.py`` logs the effective batch at start and, with
``--auto-scale-lr``, scales the learning rate linearly (NoamLR included).
"""
import os

import torch.distributed as dist
from mmengine.config import Config


def world_size(cfg: Config) -> int:
    """How many training processes the launcher started."""
    if cfg.launcher == 'none':
        return 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get('WORLD_SIZE')
               or os.environ.get('SLURM_NTASKS') or 1)


def apply_batch_rule(cfg: Config, num_processes: int) -> str:
    """The effective batch of ``num_processes`` and the learning-rate rule.

    The batch in the config is per process, so N processes train on N times
    the batch. With ``auto_scale_lr.enable`` (``--auto-scale-lr``) the
    learning rate is scaled linearly by ``effective / base_batch_size``:
    mmengine scales the optimizer's lr, which :class:`NoamLR` ignores (its
    schedule is absolute), so its ``factor`` is scaled here. Off by
    default: the official recipe is one GPU with batch 32.

    Args:
        cfg (Config): The training config (changed in place).
        num_processes (int): The world size.

    Returns:
        str: One line for the log, e.g. ``effective batch 256 = 8 processes
        x 32; lr as configured (tuned for batch 32; ...)``.
    """
    per_process = cfg.train_dataloader.batch_size
    effective = per_process * num_processes
    rule = dict(cfg.get('auto_scale_lr') or {})
    base = rule.get('base_batch_size')
    line = (f'effective batch {effective} = {num_processes} '
            f'process{"es" if num_processes != 1 else ""} x '
            f'{per_process}')
    if not rule.get('enable', False):
        if base and base != effective:
            line += (f'; lr as configured (tuned for batch {base}; '
                     '--auto-scale-lr scales it linearly)')
        return line
    if not base:
        raise ValueError('auto_scale_lr.enable needs '
                         'auto_scale_lr.base_batch_size, the batch the '
                         'schedule was tuned for')
    ratio = effective / base
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers:
        if scheduler.get('type') == 'NoamLR':
            scheduler['factor'] = scheduler.get('factor', 1.0) * ratio
    return line + f'; auto_scale_lr: lr x {ratio:g} (base batch {base})'
