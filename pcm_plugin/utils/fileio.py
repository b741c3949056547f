"""File helpers: checksums and atomic writes (temp file, then rename).

Every writer of the project goes through :func:`atomic_path` (or names its
temporary file with :func:`temp_name`), so a killed process never leaves a
half-written file under the final name; a leftover ``<name>.tmp<pid>`` is
what :func:`remove_stale_temp_files` cleans.
"""
import errno
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _kind_of(mode: int) -> str:
    """A file type in words, for the message refusing it."""
    kinds = ((stat.S_ISDIR, 'a folder'), (stat.S_ISCHR, 'a character device'),
             (stat.S_ISBLK, 'a block device'), (stat.S_ISFIFO, 'a named pipe'),
             (stat.S_ISSOCK, 'a socket'))
    return next((word for test, word in kinds if test(mode)),
                'not a regular file')


def regular_target(path: str) -> str:
    """The file a write to ``path`` replaces: ``path`` itself, or the file
    a symlink at ``path`` points to.

    Writers replace their output by renaming a new file onto it, and a
    rename replaces whatever the name holds: run as root, an output naming
    a device node would turn the node into a JSON file, and one naming a
    symlink would turn the link into a file. So a symlink is followed
    deliberately (the file it points to is rewritten and the link stays,
    as a shell's ``>`` does), and anything but an absent path or a regular
    file is refused.

    Args:
        path (str): The output path a user or config gave.

    Returns:
        str: The path to rename the new file onto.

    Raises:
        FileExistsError: ``path`` (or what it links to) exists and is not
            a regular file, or is a symlink to nothing; the message names
            it and the fix.
    """
    target = osp.realpath(path) if osp.islink(path) else path
    if target != path and not osp.lexists(target):
        raise FileExistsError(
            f'{path} is a symlink to {target}, which does not exist: remove '
            'the link or give another output path')
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the folder says why
        return target
    if not stat.S_ISREG(mode):
        through = f' (through the symlink to {target})' if target != path \
            else ''
        raise FileExistsError(
            f'{path} is {_kind_of(mode)}{through}, not a regular file: '
            'outputs replace regular files only; give a file path')
    return target


def replace_into(tmp: str, path: str) -> None:
    """Rename the finished temporary file ``tmp`` onto ``path`` if it is
    absent or a regular file (a symlink: onto the file it points to).

    Raises:
        FileExistsError: see :func:`regular_target`.
    """
    os.replace(tmp, regular_target(path))


# A file being written is ``<final name>.tmp<pid>[<suffix>]``.
_TEMP_NAME = re.compile(r'(?P<final>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.\w+)?')


def temp_name(path: str, suffix: str = '') -> str:
    """The temporary name this process writes ``path`` under.

    Args:
        path (str): The final file.
        suffix (str): Kept at the end (for writers that append one).
    """
    return f'{path}.tmp{os.getpid()}{suffix}'


def parse_temp_name(name: str) -> Optional[Tuple[str, int]]:
    """``(final name, writer pid)`` of a :func:`temp_name`, else None."""
    match = _TEMP_NAME.fullmatch(name)
    return (match['final'], int(match['pid'])) if match else None


def remove_stale_temp_files(directory: str,
                            owned: Optional[Sequence[str]] = None
                            ) -> List[str]:
    """Delete the temporary files (or folders) of writers killed mid-write.

    Which leftovers are stale follows one of two rules:

    * ``owned`` given: every temporary file of those final names, whatever
      its pid. The caller is their only writer (one rank's shards or
      images), so nothing else can be writing them; a rank never touches
      another rank's files.
    * ``owned`` None: any temporary file whose writer no longer runs on
      this machine. A live writer may be another run's save in progress
      (a checkpoint folder two runs share).

    Only regular files and folders are removed: a link or a device node
    under such a name is not a writer's leftover.

    Args:
        directory (str): Where to look (absent: nothing to do).
        owned (Sequence[str], optional): Final names the caller owns.

    Returns:
        list[str]: The removed paths, sorted.
    """
    if not osp.isdir(directory):
        return []
    owned = None if owned is None else set(owned)
    removed = []
    for name in sorted(os.listdir(directory)):
        parsed = parse_temp_name(name)
        if parsed is None:
            continue
        final, pid = parsed
        stale = final in owned if owned is not None else not _running(pid)
        path = osp.join(directory, name)
        # Only what a writer leaves, a regular file or a folder: never a
        # link or a device that happens to carry such a name.
        kind = os.lstat(path).st_mode
        if not stale or not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
            continue
        if stat.S_ISDIR(kind):
            shutil.rmtree(path)
        else:
            os.remove(path)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (not this one: it has
    not started writing yet, so a file with its pid is an old one's)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextmanager
def atomic_path(path: str, suffix: str = ''):
    """Yield a temporary path next to ``path``; rename it to ``path`` when
    the block succeeds, delete it when it fails.

    Only a regular file (or an absent path) is replaced: a symlink is
    followed to the regular file it points to, anything else (a device
    node, a pipe, a folder, a dangling link) is refused before the block
    runs (:func:`regular_target`).

    Args:
        path (str): The final file (or folder: the block creates it).
        suffix (str): Kept at the end of the temporary name (``np.savez``
            appends ``.npz`` to names without it).

    Raises:
        FileExistsError: ``path`` is not a regular file (nothing written).
    """
    path = regular_target(path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = temp_name(path, suffix)
    try:
        yield tmp
        replace_into(tmp, path)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
        elif osp.exists(tmp):
            os.remove(tmp)


# numpy's ``tofile`` (under ``np.save``) reports a short write without an
# errno: '81920 requested and 22464 written'.
_SHORT_WRITE = re.compile(r'\d+ requested and \d+ written')


class DiskFullError(OSError):
    """No space (or quota) left while writing ``path``: one line naming
    the file, the system's reason and, where given, how to go on."""

    def __init__(self, path: str, reason: str, hint: str = '') -> None:
        self.path, self.reason, self.hint = path, reason, hint
        super().__init__(errno.ENOSPC, f'disk full (or quota) writing {path} '
                         f'({reason})' + (f'; {hint}' if hint else ''))

    def __str__(self) -> str:  # the line itself, without '[Errno 28]'
        return self.strerror


def disk_full_error(err: OSError, path: str, hint: str = '') -> OSError:
    """``err`` as a :class:`DiskFullError` if it means the disk (or the
    quota) is full, else ``err`` itself.

    Args:
        err (OSError): What a write raised: ENOSPC, EDQUOT, or numpy's
            short write, which carries no errno.
        path (str): The file being written (a :class:`DiskFullError` keeps
            the file it already names).
        hint (str): How to go on, e.g. which command resumes.

    Returns:
        OSError: A :class:`DiskFullError`, or ``err`` unchanged.
    """
    if isinstance(err, DiskFullError):
        return DiskFullError(err.path, err.reason, hint or err.hint)
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or (
            err.errno is None and _SHORT_WRITE.search(str(err))):
        return DiskFullError(path, ' '.join(str(err).split()), hint)
    return err


def atomic_write_bytes(path: str, write_fn) -> None:
    """Call ``write_fn(file)`` on a temp file, fsync, then rename to path.

    Raises:
        DiskFullError: the disk or quota filled up (the previous file at
            ``path``, if any, is untouched).
    """
    with atomic_path(path) as tmp:
        try:
            with open(tmp, 'wb') as f:
                write_fn(f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            full = disk_full_error(err, path)
            if full is err:
                raise
            raise full from err


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
        FileExistsError: ``path`` exists and is not a regular file
            (:func:`regular_target`).
    """
    try:
        regular_target(path)
    except FileExistsError as err:
        raise FileExistsError(f'{flag} {err}') from None
    check_writable_dir(osp.dirname(osp.abspath(path)), f'{flag} {path}')
