"""Atomic writes: the final name holds the old or the new file, whole."""
import errno
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from pcm_plugin.utils.fileio import (
    atomic_path,
    atomic_write_json,
    file_sha256,
    parse_temp_name,
    remove_stale_temp_files,
    temp_name,
)
from tests.helpers import make_char_device


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / 'out.json'
    atomic_write_json(str(path), {'a': 1})
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, 'w') as f:
                f.write('{"half":')
            raise RuntimeError('killed mid-write')
    assert json.loads(path.read_text()) == {'a': 1}
    assert os.listdir(tmp_path) == ['out.json']


def test_suffix_is_kept_for_writers_that_append_one(tmp_path):
    import numpy as np
    path = tmp_path / 'bank.npz'
    with atomic_path(str(path), suffix='.npz') as tmp:
        assert tmp.endswith('.npz')
        np.savez(tmp, x=np.arange(3))
    assert np.load(path)['x'].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ['bank.npz']


def test_sha256_of_a_known_file(tmp_path):
    path = tmp_path / 'abc'
    path.write_bytes(b'abc')
    assert file_sha256(str(path), chunk=1) == (
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')


@pytest.fixture
def device_node(tmp_path):
    """A character device with /dev/null's numbers (root only)."""
    node = tmp_path / 'null'
    make_char_device(node)
    return node


def test_bad_input_out_naming_a_device_node_is_refused(device_node):
    import stat
    with pytest.raises(FileExistsError) as err:
        atomic_write_json(str(device_node), {'a': 1})
    assert str(err.value) == (
        f'{device_node} is a character device, not a regular file: outputs '
        'replace regular files only; give a file path')
    assert stat.S_ISCHR(os.stat(device_node).st_mode)
    assert os.listdir(device_node.parent) == ['null']


def test_bad_input_out_symlink_to_a_device_is_refused(device_node):
    import stat
    link = device_node.parent / 'out.json'
    link.symlink_to(device_node)
    with pytest.raises(FileExistsError, match=(
            r'out.json is a character device \(through the symlink to '
            r'.*null\), not a regular file')):
        atomic_write_json(str(link), {'a': 1})
    assert link.is_symlink()
    assert stat.S_ISCHR(os.stat(device_node).st_mode)


def test_bad_input_out_symlink_is_followed_to_its_file(tmp_path):
    """The file the link names is rewritten atomically; the link stays."""
    real = tmp_path / 'runs' / 'metrics.json'
    real.parent.mkdir()
    real.write_text('{"old": 1}')
    link = tmp_path / 'latest.json'
    link.symlink_to(real)
    atomic_write_json(str(link), {'new': 2})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text()) == {'new': 2}
    assert sorted(os.listdir(tmp_path)) == ['latest.json', 'runs']
    assert os.listdir(real.parent) == ['metrics.json']


@pytest.mark.parametrize('make, fragment', [
    (lambda p: p.mkdir(), 'is a folder, not a regular file'),
    (lambda p: os.mkfifo(p), 'is a named pipe, not a regular file'),
    (lambda p: p.symlink_to(p.parent / 'gone.json'),
     'gone.json, which does not exist'),
])
def test_bad_input_out_naming_no_regular_file(tmp_path, make, fragment):
    out = tmp_path / 'out.json'
    make(out)
    with pytest.raises(FileExistsError, match=fragment):
        with atomic_path(str(out)) as tmp:
            raise AssertionError(f'the block ran and would write {tmp}')
    assert os.listdir(tmp_path) == ['out.json']


def test_bad_input_out_checked_before_any_work(device_node):
    from pcm_plugin.utils.fileio import check_writable_output
    with pytest.raises(FileExistsError, match=(
            f'^--out {device_node} is a character device')):
        check_writable_output(str(device_node))


@pytest.mark.parametrize('err, reason', [
    (OSError(errno.ENOSPC, 'No space left on device'),
     '[Errno 28] No space left on device'),
    (OSError(errno.EDQUOT, 'Disk quota exceeded'),
     '[Errno 122] Disk quota exceeded'),
    (OSError('81920 requested and 22464 written'),  # numpy, no errno
     '81920 requested and 22464 written'),
], ids=['enospc', 'edquot', 'numpy_short_write'])
def test_bad_input_disk_full_error_names_the_file(err, reason):
    from pcm_plugin.utils.fileio import disk_full_error
    full = disk_full_error(err, '/x/y.npy', 'free space and re-run')
    assert full.errno == errno.ENOSPC
    assert str(full) == (f'disk full (or quota) writing /x/y.npy ({reason}); '
                         'free space and re-run')
    # Wrapped again by a caller that knows how to resume: the file stays.
    again = disk_full_error(full, '/x/shard-3', 'resume with X')
    assert str(again) == (f'disk full (or quota) writing /x/y.npy ({reason}); '
                          'resume with X')
    other = OSError(errno.EACCES, 'denied')
    assert disk_full_error(other, '/x', 'hint') is other
    plain = OSError('closed file')  # no errno, not a short write
    assert disk_full_error(plain, '/x') is plain


def test_temp_names_parse_back_to_their_final_name_and_writer(tmp_path):
    final = str(tmp_path / 'epoch_3.pth')
    assert parse_temp_name(osp.basename(temp_name(final))) == (
        'epoch_3.pth', os.getpid())
    assert parse_temp_name(osp.basename(temp_name(final, '.npz'))) == (
        'epoch_3.pth', os.getpid())
    assert parse_temp_name('a.png.tmpx') is None
    assert parse_temp_name('a.png') is None


def test_owned_temp_files_are_removed_whatever_their_writer(tmp_path):
    """One rank's files: the rank is their only writer."""
    for name in ('a.png.tmp12', 'b.png.tmp7', 'a.png', 'a.png.tmpx',
                 'c.png.tmp3', 'b.png.tmp9.png'):
        (tmp_path / name).write_text('x')
    removed = remove_stale_temp_files(str(tmp_path), ['a.png', 'b.png'])
    assert [osp.basename(p) for p in removed] == [
        'a.png.tmp12', 'b.png.tmp7', 'b.png.tmp9.png']
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'a.png', 'a.png.tmpx', 'c.png.tmp3']
    assert remove_stale_temp_files(str(tmp_path / 'none'), ['a']) == []


def test_unowned_temp_files_go_only_when_their_writer_is_gone(tmp_path):
    """A shared folder (checkpoints): a live writer may be another run's
    save in progress; a temp folder of a dead writer goes too."""
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    live = subprocess.Popen([sys.executable, '-c',
                             'import time; time.sleep(60)'])
    try:
        (tmp_path / f'epoch_3.pth.tmp{gone.pid}').write_bytes(b'half')
        (tmp_path / f'release.tmp{gone.pid}').mkdir()
        (tmp_path / f'release.tmp{gone.pid}' / 'model.safetensors').touch()
        (tmp_path / f'epoch_4.pth.tmp{live.pid}').write_bytes(b'saving')
        (tmp_path / 'epoch_2.pth').write_bytes(b'kept')
        (tmp_path / 'notes.tmpx').write_bytes(b'not ours')
        # A link under a writer's name is not a leftover (not followed).
        (tmp_path / f'epoch_5.pth.tmp{gone.pid}').symlink_to('epoch_2.pth')
        removed = remove_stale_temp_files(str(tmp_path))
    finally:
        live.kill()
    assert [osp.basename(p) for p in removed] == [
        f'epoch_3.pth.tmp{gone.pid}', f'release.tmp{gone.pid}']
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        'epoch_2.pth', f'epoch_4.pth.tmp{live.pid}', 'notes.tmpx',
        f'epoch_5.pth.tmp{gone.pid}'])
