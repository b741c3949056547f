"""A quiet console for the demo: progress and results, not mmengine's dumps.

mmengine prints the environment, the whole config and every hook to the
console; a newcomer running ``make demo`` needs three lines. Inside
:func:`quiet_console` everything written to the process's stdout and
stderr (Python, mmengine, the Java tokenizer of the scorers) goes to
``/dev/null`` (the run's log file in the work dir keeps mmengine's
output) and :class:`ConsoleProgressHook` shows the progress on the real
stderr, through :func:`~pcm_plugin.utils.progress.progress_bar`: a bar on
a terminal, plain lines in a log.
"""
import contextlib
import os
import sys

from mmengine.hooks import Hook

from pcm_plugin.registry import HOOKS
from pcm_plugin.utils.progress import progress_bar


@HOOKS.register_module()
class ConsoleProgressHook(Hook):
    """Training and test progress on the real stderr.

    Args:
        label (str): What the lines start with. Defaults to ``'[demo]'``.
        every_s (float): Seconds between plain lines when stderr is not a
            terminal. Defaults to 30.
    """

    priority = 'LOW'

    def __init__(self, *, label: str = '[demo]', every_s: float = 30.0
                 ) -> None:
        self.label, self.every_s = label, every_s
        self._bar = None
        self._val_cider = None

    def _start(self, what: str, total: int, unit: str, done: int = 0
               ) -> None:
        self._bar = progress_bar(total=total, desc=f'{self.label} {what}',
                                 unit=unit, initial=done,
                                 stream=_terminal or sys.__stderr__,
                                 every_s=self.every_s)

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def before_train(self, runner) -> None:
        self._start('training', runner.max_iters, 'iter', runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        values = dict(epoch=f'{runner.epoch + 1}/{runner.max_epochs}')
        if loss is not None:
            values['loss'] = f'{float(loss):.3f}'
        if self._val_cider is not None:
            values['val_CIDEr'] = self._val_cider
        self._bar.set_postfix(**values)
        self._bar.update()

    def after_val_epoch(self, runner, metrics=None) -> None:
        # The demo validates every epoch: the last CIDEr rides the bar.
        if metrics and 'CIDEr' in metrics:
            self._val_cider = f'{float(metrics["CIDEr"]):.1f}'

    def after_train(self, runner) -> None:
        self._stop()

    def before_test(self, runner) -> None:
        self._start('captioning the test images',
                    len(runner.test_dataloader), 'batch')

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        self._bar.update()

    def after_test(self, runner) -> None:
        self._stop()


_terminal = None  # the real stderr while quiet_console is active


@contextlib.contextmanager
def quiet_console():
    """Send what the block writes to stdout/stderr to ``/dev/null``, at the
    file-descriptor level (child processes too); errors still raise."""
    global _terminal
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    _terminal = os.fdopen(os.dup(saved[1]), 'w')
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, sink):
            os.close(fd)
        _terminal.close()
        _terminal = None
