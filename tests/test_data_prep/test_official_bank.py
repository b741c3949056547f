"""Safe import of official-style pickled concept banks (synthetic files)."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from pcm_plugin.data_prep.official_bank import (
    UnsafePickleError,
    read_official_bank,
)


def write_pickle(path, obj) -> str:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return str(path)


def assert_armed(path: str, marker) -> None:
    """Prove the crafted file does run its command under plain pickle.

    (In a subprocess, after the refusal was checked; it only touches a file
    in the test's tmp dir.) Without this, "nothing ran" could pass because
    the file was harmless to begin with.
    """
    subprocess.run([sys.executable, '-c', 'import pickle, sys; '
                    'pickle.load(open(sys.argv[1], "rb"))', path],
                   capture_output=True, timeout=120)
    assert marker.exists()


def unit_fp16(num: int, dim: int):
    import torch
    rows = torch.randn(num, dim, generator=torch.Generator().manual_seed(0))
    return (rows / rows.norm(dim=1, keepdim=True)).half()


def test_reads_words_and_exact_fp16_values(tmp_path):
    tensor = unit_fp16(3, 8)
    path = write_pickle(tmp_path / 'bank.pickle',
                        (['cat', 'dog', 'zebra'], tensor))
    words, emb = read_official_bank(path)
    assert words == ['cat', 'dog', 'zebra']
    assert emb.dtype == np.float16
    assert emb.tobytes() == tensor.numpy().tobytes()  # bit-exact


def test_non_contiguous_view_keeps_values(tmp_path):
    tensor = unit_fp16(4, 6)[::2]  # storage offset/stride preserved
    path = write_pickle(tmp_path / 'b.pickle', (['a', 'b'], tensor))
    np.testing.assert_array_equal(read_official_bank(path)[1],
                                  tensor.numpy())


class RunsShell:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


class CallsEval(RunsShell):

    def __reduce__(self):
        return eval, (f'__import__("os").system("touch {self.marker}")',)


@pytest.mark.parametrize('payload,global_name', [
    (lambda marker: RunsShell(marker), f'{os.system.__module__}.system'),
    (lambda marker: CallsEval(marker), 'builtins.eval'),
], ids=['os.system', 'eval'])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, payload,
                                                    global_name):
    marker = tmp_path / 'pwned'
    path = write_pickle(tmp_path / 'evil.pickle',
                        (['dog'], payload(str(marker))))
    with pytest.raises(UnsafePickleError, match=rf'refusing to load global '
                       rf'{global_name}'):
        read_official_bank(path)
    assert not marker.exists()
    assert_armed(path, marker)


class EvilStorageBytes:
    """Routes a malicious inner pickle through the admitted loader."""

    def __init__(self, marker):
        self.inner = pickle.dumps(RunsShell(marker))

    def __reduce__(self):
        import torch.storage
        return torch.storage._load_from_bytes, (self.inner,)


def test_malicious_inner_storage_bytes_are_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = write_pickle(tmp_path / 'evil.pickle',
                        (['dog'], EvilStorageBytes(str(marker))))
    with pytest.raises(UnsafePickleError, match='not a readable'):
        read_official_bank(path)
    assert not marker.exists()
    assert_armed(path, marker)


@pytest.mark.parametrize('obj,message', [
    ([['a'], None], 'expected a pickled \\(words, embeddings\\) tuple'),
    ((['a', 'b'], 'x'), 'must be a 2-D float tensor'),
    (([1, 2], None), 'list of words'),
])
def test_wrong_structure(tmp_path, obj, message):
    path = write_pickle(tmp_path / 'b.pickle', obj)
    with pytest.raises(ValueError, match=message):
        read_official_bank(path)


def test_shape_mismatch_and_missing_file(tmp_path):
    path = write_pickle(tmp_path / 'b.pickle', (['a'], unit_fp16(2, 4)))
    with pytest.raises(ValueError, match='1 words but embeddings of shape '
                       r'\(2, 4\)'):
        read_official_bank(path)
    with pytest.raises(FileNotFoundError, match='official concept bank'):
        read_official_bank(str(tmp_path / 'none.pickle'))
    (tmp_path / 'cut.pickle').write_bytes(
        (tmp_path / 'b.pickle').read_bytes()[:40])
    with pytest.raises(UnsafePickleError, match='cut.pickle: not a readable'):
        read_official_bank(str(tmp_path / 'cut.pickle'))
