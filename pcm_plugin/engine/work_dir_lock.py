"""One training run per work dir.

Two runs in one work dir overwrite each other's checkpoints and write one
interleaved log, and both exit 0. ``tools/train.py`` takes an exclusive
``flock`` on ``<work_dir>/.train.lock`` before it builds the runner; the
kernel drops the lock when the process ends, however it ends (SIGKILL
included), so a lock is never stale. The file itself stays, holding the
last holder's pid, host and start time for the refusal message.
"""
import fcntl
import json
import os
import os.path as osp
import socket
import time
from typing import IO

LOCK_NAME = '.train.lock'

# The open lock files of this process: the lock lives as long as the file.
_held = {}


def lock_work_dir(work_dir: str) -> IO:
    """Take the work dir's training lock for this process's lifetime.

    Args:
        work_dir (str): The run's work dir (created if missing).

    Returns:
        The open lock file (also kept by this module).

    Raises:
        RuntimeError: Another live process holds the lock; names it.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    if path in _held:
        return _held[path]
    lock = open(path, 'a+')
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(lock)
        lock.close()
        raise RuntimeError(
            f'work dir {work_dir} is in use by another training run '
            f'({holder}); wait for it to end, or pass another --work-dir'
        ) from None
    lock.seek(0)
    lock.truncate()
    json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
                   started=time.strftime('%Y-%m-%d %H:%M:%S')), lock)
    lock.flush()
    _held[path] = lock
    return lock


def _read_holder(lock: IO) -> str:
    lock.seek(0)
    try:
        holder = json.loads(lock.read())
        return (f'pid {holder["pid"]} on {holder["host"]}, started '
                f'{holder["started"]}')
    except (ValueError, KeyError, TypeError):
        return 'holder unknown'


def unlock_work_dir(work_dir: str) -> None:
    """Release this process's lock on ``work_dir`` (if it holds one)."""
    lock = _held.pop(osp.join(work_dir, LOCK_NAME), None)
    if lock is not None:
        lock.close()  # closing the file drops the flock
