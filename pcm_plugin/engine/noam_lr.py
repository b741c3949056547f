"""Noam learning-rate schedule ("Attention is all you need", §5.3).

PCM-Net trains with it (docs/method.md §6.1): linear warm-up, then decay as
``1 / sqrt(s)``, stepped every iteration. Written from the formula; the
mmengine plumbing (state dict, ``begin``/``end``, the optimizer-step
counter) comes from :class:`mmengine.optim._ParamScheduler`.
"""
import warnings
from typing import List, Union

from mmengine.optim import BaseOptimWrapper
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from torch.optim import Optimizer

from pcm_plugin.registry import PARAM_SCHEDULERS


def noam_lr(step: int,
            *,
            model_dim: int = 512,
            warmup: int = 10000,
            factor: float = 1.0) -> float:
    """``factor * model_dim^-0.5 * min(step^-0.5, step * warmup^-1.5)``.

    Args:
        step (int): 1-based step ``s`` (iteration + 1).
        model_dim (int): Model width ``d``. Defaults to 512.
        warmup (int): Warm-up steps ``w``; the peak is at ``s = w``.
            Defaults to 10000.
        factor (float): Overall multiplier. Defaults to 1.0.

    Returns:
        float: The learning rate at step ``s``.
    """
    if step < 1:
        raise ValueError(f'the Noam step is 1-based, got step={step}')
    return factor * model_dim**-0.5 * min(step**-0.5, step * warmup**-1.5)


@PARAM_SCHEDULERS.register_module()
class NoamLR(LRSchedulerMixin, _ParamScheduler):
    """Set every param group's lr to the Noam schedule.

    ``lr(s) = factor * model_dim^-0.5 * min(s^-0.5, s * warmup^-1.5)`` with
    ``s = last_step + 1``, i.e. ``iteration + 1`` counted from ``begin``.
    With the defaults the peak is ``512^-0.5 * 10000^-0.5 ~= 4.42e-4`` at
    ``s = 10000``.

    The schedule is absolute: **the optimizer's configured lr (``BASE_LR``
    in the official configs) is ignored**, exactly as in the official code,
    and all param groups get the same value. It is meant to step every
    iteration (``by_epoch=False``, the default, so no
    ``convert_to_iter_based`` is needed); with ``by_epoch=True`` ``s``
    would count epochs instead.

    **Write ``by_epoch=False`` explicitly in configs.** mmengine's Runner
    fills a missing ``end`` with ``max_epochs`` unless the config dict itself
    says ``by_epoch=False`` (it does not look at this class's default), which
    would freeze the lr after 1-2 iterations. The constructor warns when
    ``end - begin < warmup`` for that reason.

    Runner resume works through the standard
    ``state_dict``/``load_state_dict`` of mmengine schedulers (``last_step``
    and the schedule arguments are saved).

    Args:
        optimizer (Optimizer or BaseOptimWrapper): The wrapped optimizer.
        model_dim (int): Model width ``d``. Defaults to 512.
        warmup (int): Warm-up steps ``w``. Defaults to 10000.
        factor (float): Overall multiplier. Defaults to 1.0.
        begin (int): Step at which the schedule starts. Defaults to 0.
        end (int): Step at which it stops updating. Defaults to INF (the
            Runner sets it to ``max_iters`` when left out of the config).
        by_epoch (bool): Step per epoch instead of per iteration.
            Defaults to False.
        last_step (int): Index of the last step, to resume without a state
            dict. Defaults to -1 (fresh start).
        verbose (bool): Log every update. Defaults to False.
    """

    def __init__(self,
                 optimizer: Union[Optimizer, BaseOptimWrapper],
                 *,
                 model_dim: int = 512,
                 warmup: int = 10000,
                 factor: float = 1.0,
                 begin: int = 0,
                 end: int = INF,
                 by_epoch: bool = False,
                 last_step: int = -1,
                 verbose: bool = False) -> None:
        if model_dim <= 0 or warmup <= 0:
            raise ValueError('NoamLR needs model_dim > 0 and warmup > 0, got '
                             f'model_dim={model_dim}, warmup={warmup}')
        # Set before super().__init__, which already calls _get_value().
        self.model_dim = model_dim
        self.warmup = warmup
        self.factor = factor
        if end - begin < warmup:
            warnings.warn(
                f'NoamLR stops updating at step end={end}, before its '
                f'warm-up of {warmup} steps is over. If it was built from a '
                'config without `by_epoch=False`, mmengine\'s Runner set '
                '`end` to max_epochs: add by_epoch=False to the config.')
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the step counter, keeping this run's ``begin``/``end``.

        mmengine's Runner fills a missing ``end`` with the run's
        ``max_iters``, and a scheduler stops counting ``last_step`` at its
        ``end``. Resuming with a longer schedule (more epochs) would then
        restore the old ``end`` and freeze the lr, or lag one step behind.
        The global step counter keeps counting, so the Noam step is
        re-derived from it and applied to the optimizer (whose restored lr
        is the previous run's last applied value).
        """
        super().load_state_dict({k: v for k, v in state_dict.items()
                                 if k not in ('begin', 'end')})
        if self.begin <= self._global_step < self.end:
            self.last_step = self._global_step - self.begin
            for group, value in zip(self.optimizer.param_groups,
                                    self._get_value()):
                group[self.param_name] = value

    def _get_value(self) -> List[float]:
        """The lr of every param group at ``s = last_step + 1``."""
        lr = noam_lr(
            self.last_step + 1,
            model_dim=self.model_dim,
            warmup=self.warmup,
            factor=self.factor)
        return [lr for _ in self.optimizer.param_groups]
