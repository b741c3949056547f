"""A hook that kills its own process, to test recovery from a real kill.

Import it with ``custom_imports = dict(imports=['pcm_plugin',
'pcm_plugin.testing.kill_hook'])``; nothing else uses it.
"""
import os
import signal

from mmengine.hooks import Hook

from pcm_plugin.registry import HOOKS


@HOOKS.register_module()
class KillAtIterationHook(Hook):
    """SIGKILL the training process once ``iteration`` iterations are done
    (after every other hook of that iteration, checkpoint saves included).

    Args:
        iteration (int): 1-based iteration after which to die.
    """

    priority = 'LOWEST'

    def __init__(self, *, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
