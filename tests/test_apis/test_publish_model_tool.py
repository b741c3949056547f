"""tools/publish_model.py as a user runs it: both release forms, and
files that others on a shared machine can read."""
import os
import stat

import pytest

from tests.conftest import run_tool


@pytest.fixture
def umask_022():
    """The usual umask, whatever the test runner's is."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_one_file_release_from_the_command_line(checkpoint, tmp_path):
    config, ckpt, _ = checkpoint
    out = tmp_path / 'pcm-demo.safetensors'
    proc = run_tool('publish_model.py', [config, ckpt, out])
    assert proc.stdout.strip() == \
        f'released pcm-demo to {out}: pcm-demo.safetensors'
    assert out.is_file()


def test_folder_release_from_the_command_line(checkpoint, tmp_path):
    config, ckpt, _ = checkpoint
    out = tmp_path / 'pcm-demo'
    proc = run_tool('publish_model.py', [config, ckpt, out])
    listed = proc.stdout.strip().split(': ', 1)[1].split(', ')
    assert sorted(listed + ['release.json']) == sorted(os.listdir(out))
    assert proc.stdout.startswith(f'released pcm-demo to {out}: ')


def test_released_files_follow_the_umask(checkpoint, tmp_path, umask_022):
    """safetensors writes 0600 on its own; a release is for others."""
    from pcm_plugin.apis import publish_model
    config, ckpt, _ = checkpoint
    folder = tmp_path / 'rel'
    publish_model(config, ckpt, str(folder))
    modes = {name: _mode(folder / name) for name in os.listdir(folder)}
    assert modes == {name: 0o644 for name in modes}
    assert _mode(folder) == 0o755
    one = tmp_path / 'one.safetensors'
    publish_model(config, ckpt, str(one))
    assert _mode(one) == 0o644
    os.umask(0o077)  # and a private umask is kept private
    private = tmp_path / 'private.safetensors'
    publish_model(config, ckpt, str(private))
    assert _mode(private) == 0o600
