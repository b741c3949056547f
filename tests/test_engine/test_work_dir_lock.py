"""One training run per work dir; a killed run leaves no stale lock.

The lock's holder is another process (it imports the package: marked
slow); the refused train tool runs in-process."""
import os
import signal
import subprocess
import sys

import pytest

from pcm_plugin.engine.work_dir_lock import lock_work_dir, unlock_work_dir
from tests.helpers import REPO_ROOT, run_tool_main

HOLD = ('import sys, time; sys.path.insert(0, {root!r}); '
        'from pcm_plugin.engine.work_dir_lock import lock_work_dir; '
        'lock_work_dir({work!r}); print("locked", flush=True); '
        'time.sleep(120)')


@pytest.fixture
def holder(tmp_path):
    """Another process holding the work dir's lock."""
    work = str(tmp_path / 'work')
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLD.format(root=REPO_ROOT, work=work)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'locked'
    yield work, proc
    proc.kill()
    proc.wait()


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_killed_holder_frees_the_dir(holder):
    work, proc = holder
    with pytest.raises(RuntimeError, match=(
            rf'work dir {work} is in use by another training run \(pid '
            rf'{proc.pid} on .*started .*pass another --work-dir')):
        lock_work_dir(work)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock_work_dir(work)  # no stale lock after SIGKILL
    unlock_work_dir(work)


@pytest.mark.slow
def test_the_train_tool_refuses_a_busy_work_dir_in_one_line(holder, toy_world,
                                                            tmp_path):
    from pcm_plugin.testing.toy_features import toy_config
    work, proc = holder
    config = str(tmp_path / 'toy.py')
    toy_config(toy_world, work, max_epochs=1).dump(config)
    with pytest.raises(SystemExit) as exit_:
        run_tool_main('tools/train.py', [config, '--work-dir', work])
    message = str(exit_.value)
    assert message.startswith(f'error: work dir {work} is in use')
    assert f'pid {proc.pid}' in message and '\n' not in message
    assert not [name for name in os.listdir(work) if name.endswith('.pth')]
