"""File helpers: checksums and atomic writes (temp file, then rename).

Every writer of the project goes through :func:`atomic_path`, so a killed
process never leaves a half-written file under the final name; a leftover
``<name>.tmp<pid>`` is what :mod:`pcm_plugin.data_prep.sharding` cleans.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
from contextlib import contextmanager


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str, suffix: str = ''):
    """Yield a temporary path next to ``path``; rename it to ``path`` when
    the block succeeds, delete it when it fails.

    Args:
        path (str): The final file (or folder: the block creates it).
        suffix (str): Kept at the end of the temporary name (``np.savez``
            appends ``.npz`` to names without it).
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}{suffix}'
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
        elif osp.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, write_fn) -> None:
    """Call ``write_fn(file)`` on a temp file, fsync, then rename to path."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str, obj, indent: int = 1) -> None:
    """Write ``obj`` as JSON atomically (numpy scalars as floats)."""
    atomic_write_bytes(path, lambda f: f.write(
        json.dumps(obj, indent=indent, default=float).encode('utf-8')))


def check_writable_dir(folder: str, what: str) -> None:
    """Fail before any work if ``folder`` cannot be created or written.

    Writes (and removes) a probe file: ``os.access`` says yes to root on a
    read-only file system.

    Raises:
        FileNotFoundError: naming ``what`` (e.g. ``'--out m.json'``), the
            folder and why.
    """
    import tempfile
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise FileNotFoundError(
            f'{what}: cannot create folder {folder} ({err.strerror})'
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.probe'):
            pass
    except OSError as err:
        raise FileNotFoundError(
            f'{what}: folder {folder} is not writable ({err.strerror})'
        ) from None


def check_writable_output(path: str, flag: str = '--out') -> None:
    """Fail before any work if the output file ``path`` cannot be written.

    Raises:
        FileNotFoundError: naming ``flag``, the path and why.
    """
    check_writable_dir(osp.dirname(osp.abspath(path)), f'{flag} {path}')
