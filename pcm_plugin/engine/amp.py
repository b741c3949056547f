"""Mixed precision for ``tools/train.py`` and ``tools/test.py`` (``--amp``).

``--amp`` runs the model's forward under ``torch.autocast``:

* bfloat16 (the default, CPU or GPU) keeps float32's exponent range, so
  gradients need no loss scaling: :class:`BF16OptimWrapper` only adds the
  autocast context. (mmengine's ``AmpOptimWrapper`` refuses to be built
  without a GPU, and its loss scaling does nothing useful in bfloat16.)
* float16 (CUDA only; CPU autocast has no float16) needs dynamic loss
  scaling against underflowing gradients: mmengine's ``AmpOptimWrapper``.

The parameters, the optimizer state, the loss (its log-softmax casts the
logits to float32) and the beam scores stay float32 in both.
"""
from contextlib import contextmanager
from typing import Optional

import torch
from mmengine.optim import OptimWrapper
from mmengine.runner import TestLoop
from mmengine.runner.amp import autocast

from pcm_plugin.registry import LOOPS, OPTIM_WRAPPERS

AMP_DTYPES = ('bfloat16', 'float16')


def check_amp_dtype(dtype: Optional[str], *, cuda: bool) -> str:
    """The autocast dtype ``--amp`` runs with on this machine.

    Args:
        dtype (str, optional): ``'bfloat16'``, ``'float16'`` or None
            (bfloat16).
        cuda (bool): Whether the run is on a CUDA GPU.

    Returns:
        str: The dtype's name.

    Raises:
        ValueError: An unknown dtype, float16 without CUDA, or bfloat16 on
            a GPU that lacks it.
    """
    dtype = dtype or 'bfloat16'
    if dtype not in AMP_DTYPES:
        raise ValueError(f'--amp-dtype must be one of {AMP_DTYPES}, got '
                         f'{dtype!r}')
    if dtype == 'float16' and not cuda:
        raise ValueError('--amp-dtype float16 needs a CUDA GPU (CPU '
                         'autocast runs bfloat16 only): drop --amp-dtype '
                         'for bfloat16')
    if dtype == 'bfloat16' and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError('this GPU has no bfloat16: pass --amp-dtype float16')
    return dtype


def amp_optim_wrapper(optim_wrapper: dict, dtype: str) -> dict:
    """``optim_wrapper`` config switched to mixed precision.

    Args:
        optim_wrapper (dict): The config's ``optim_wrapper``.
        dtype (str): From :func:`check_amp_dtype`.

    Returns:
        dict: The same settings (optimizer, clipping, ...) with the wrapper
        type for ``dtype``.
    """
    if dtype == 'bfloat16':
        return dict(optim_wrapper, type='BF16OptimWrapper')
    return dict(optim_wrapper, type='AmpOptimWrapper', dtype=dtype,
                loss_scale=optim_wrapper.get('loss_scale', 'dynamic'))


def amp_test_cfg(test_cfg: Optional[dict], dtype: str) -> dict:
    """``test_cfg`` running the test loop under autocast in ``dtype``.

    mmengine's ``test_cfg.fp16=True`` autocasts in float16 on CUDA
    whatever ``--amp-dtype`` says; :class:`AutocastTestLoop` takes a dtype.

    Raises:
        ValueError: The config already names another test loop.
    """
    test_cfg = dict(test_cfg or {})
    if test_cfg.get('type', 'TestLoop') not in ('TestLoop',
                                                'AutocastTestLoop'):
        raise ValueError(f"--amp: test_cfg.type={test_cfg['type']!r} is not "
                         "mmengine's TestLoop; add autocast to that loop")
    test_cfg.pop('fp16', None)
    return dict(test_cfg, type='AutocastTestLoop', dtype=dtype)


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward and loss run under bfloat16 autocast.

    No loss scaling (bfloat16 gradients do not underflow where float32 ones
    do not), so its state is the optimizer's alone and a run can resume
    with or without ``--amp``. Works on CPU and GPU.

    Args:
        **kwargs: Those of ``OptimWrapper`` (optimizer, clip_grad, ...).
    """

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        """``OptimWrapper``'s context (gradient accumulation) + autocast.

        Args:
            model (nn.Module): The trained model.
        """
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield


@LOOPS.register_module()
class AutocastTestLoop(TestLoop):
    """mmengine's ``TestLoop`` with the model's test step under autocast
    in a chosen dtype.

    The parent loop autocasts the test step itself when ``fp16=True`` (and
    disables autocast otherwise), in float16 on CUDA unless the thread's
    autocast dtype says else; :meth:`run_iter` sets that dtype by entering
    an autocast context in ``dtype`` around it.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): Test dataloader.
        evaluator (Evaluator | dict | list): Test evaluator.
        dtype (str): ``'bfloat16'`` or ``'float16'`` (CUDA only).
            Defaults to 'bfloat16'.
    """

    def __init__(self, runner, dataloader, evaluator, *,
                 dtype: str = 'bfloat16'):
        super().__init__(runner, dataloader, evaluator, fp16=True)
        self.dtype = getattr(torch, dtype)

    def run_iter(self, idx: int, data_batch) -> None:
        """One test batch, its test step under autocast in ``dtype``."""
        with autocast(dtype=self.dtype):
            super().run_iter(idx, data_batch)
