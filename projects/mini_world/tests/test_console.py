"""The demo's console hook: plain progress lines off a terminal."""
import io
from types import SimpleNamespace

from projects.mini_world.pcm_mini_world import console


def test_console_hook_prints_plain_lines_off_a_terminal(monkeypatch):
    """The demo's training line in a log: lines, not ``\\r`` soup."""
    stream = io.StringIO()
    monkeypatch.setattr(console, '_terminal', stream)
    hook = console.ConsoleProgressHook(every_s=0)
    runner = SimpleNamespace(max_iters=2, iter=0, epoch=0, max_epochs=1,
                             test_dataloader=[0])
    hook.before_train(runner)
    for _ in range(2):
        hook.after_train_iter(runner, 0, outputs=dict(loss=0.5))
    hook.after_train(runner)
    hook.before_test(runner)
    hook.after_test_iter(runner, 0)
    hook.after_test(runner)
    assert stream.getvalue().splitlines() == [
        '[demo] training: 1/2 iter (50%), 0 s, epoch=1/1, loss=0.500',
        '[demo] training: 2/2 iter (100%), 0 s, epoch=1/1, loss=0.500',
        '[demo] captioning the test images: 1/1 batch (100%), 0 s']
