"""A quiet console for the demo: progress and results, not mmengine's dumps.

mmengine prints the environment, the whole config and every hook to the
console; a newcomer running ``make demo`` needs three lines. Inside
:func:`quiet_console` everything written to the process's stdout and
stderr (Python, mmengine, the Java tokenizer of the scorers) goes to
``/dev/null`` (the run's log file in the work dir keeps mmengine's
output) and :class:`ConsoleProgressHook` draws one progress line on the
terminal.
"""
import contextlib
import os
import sys
import time

from mmengine.hooks import Hook

from pcm_plugin.registry import HOOKS


@HOOKS.register_module()
class ConsoleProgressHook(Hook):
    """One self-overwriting progress line per phase on the real stdout.

    Args:
        label (str): What the line starts with. Defaults to ``'[demo]'``.
        every (int): Redraw every this many iterations. Defaults to 25.
    """

    priority = 'LOW'

    def __init__(self, *, label: str = '[demo]', every: int = 25) -> None:
        self.label, self.every = label, every
        self._start = None

    def _draw(self, text: str, *, end: str = '') -> None:
        stream = _terminal or sys.__stdout__
        if stream is not None:
            stream.write(f'\r{self.label} {text}'.ljust(78) + end)
            stream.flush()

    def before_train(self, runner) -> None:
        self._start = time.time()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        done, total = runner.iter + 1, runner.max_iters
        if done % self.every and done != total:
            return
        elapsed = time.time() - self._start
        eta = elapsed / done * (total - done)
        loss = (outputs or {}).get('loss')
        loss = f', loss {float(loss):.3f}' if loss is not None else ''
        self._draw(f'training {done}/{total} iterations (epoch '
                   f'{runner.epoch + 1}/{runner.max_epochs}{loss}), '
                   f'{eta:.0f} s left')

    def after_train(self, runner) -> None:
        self._draw(f'trained in {time.time() - self._start:.0f} s', end='\n')

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        total = len(runner.test_dataloader)
        self._draw(f'captioning the test images: batch {batch_idx + 1}/'
                   f'{total}', end='\n' if batch_idx + 1 == total else '')


_terminal = None  # the real stdout while quiet_console is active


@contextlib.contextmanager
def quiet_console():
    """Send what the block writes to stdout/stderr to ``/dev/null``, at the
    file-descriptor level (child processes too); errors still raise."""
    global _terminal
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    _terminal = os.fdopen(os.dup(saved[0]), 'w')
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
