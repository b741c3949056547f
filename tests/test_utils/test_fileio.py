"""Atomic writes: the final name holds the old or the new file, whole."""
import json
import os

import pytest

from pcm_plugin.utils.fileio import atomic_path, atomic_write_json, file_sha256


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
