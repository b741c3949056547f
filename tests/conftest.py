"""Shared fixtures: tiny random CLIP checkpoints, concept banks, tokenizers.

Everything is built in a temporary directory per test session; nothing is
downloaded.
"""
import os
import os.path as osp

import numpy as np
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data')


@pytest.fixture(scope='session')
def shared_data() -> str:
    """``../shared/data`` (real public data), or skip where it is absent."""
    if not osp.isdir(SHARED_DATA):
        pytest.skip(f'real data not found at {SHARED_DATA} (it ships beside '
                    'the repository on the project machines only)')
    return SHARED_DATA


@pytest.fixture(scope='session')
def tiny_clip(tmp_path_factory):
    """A tiny ViT-B/32-layout open_clip model: (name, checkpoint path)."""
    from pcm_plugin.testing import build_tiny_open_clip
    return build_tiny_open_clip(str(tmp_path_factory.mktemp('tiny_clip')),
                                'pcm-tiny-vit-b32')


def random_unit_rows(num: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((num, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
        np.float32)


@pytest.fixture(scope='session')
def tiny_bank(tmp_path_factory) -> str:
    """A 12-word concept bank with random unit 32-d rows (tiny CLIP's Dg)."""
    from pcm_plugin.models.concept_bank import save_concept_bank
    words = [f'concept{i}' for i in range(12)]
    path = str(tmp_path_factory.mktemp('bank') / 'bank.npz')
    save_concept_bank(path, words, random_unit_rows(12, 32))
    return path


CAPTIONS = [
    'a red circle above a blue square', 'a small green triangle',
    'two yellow squares on a white background', 'a big blue circle',
    'a red square left of a green circle', 'a purple triangle below a circle',
]


@pytest.fixture(scope='session')
def tiny_tokenizer(tmp_path_factory) -> str:
    """``tokenizer.json`` built from :data:`CAPTIONS` (min count 1)."""
    from pcm_plugin.models.tokenizer import (
        build_word_tokenizer,
        count_words,
        save_tokenizer,
    )
    path = str(tmp_path_factory.mktemp('tok') / 'tokenizer.json')
    save_tokenizer(build_word_tokenizer(count_words(CAPTIONS), min_count=1),
                   path)
    return path


@pytest.fixture(scope='session')
def toy_world(tmp_path_factory, tiny_clip):
    """A learnable toy feature dataset in the project's real formats."""
    from pcm_plugin.testing.toy_features import make_toy_feature_world
    paths = make_toy_feature_world(
        str(tmp_path_factory.mktemp('toy_world')),
        clip_checkpoint=tiny_clip[1], num_train=64, num_test=8)
    return dict(paths, clip_head=tiny_clip[1])


def dump_captioning_config(toy_world, root) -> str:
    """A toy PCM-Net config that also names its (tiny) CLIP, so that raw
    images can be captioned with it; returns the dumped file's path."""
    from pcm_plugin.testing.toy_features import toy_config
    cfg = toy_config(toy_world, osp.join(str(root), 'work'))
    clip_dir = osp.dirname(toy_world['clip_head'])
    cfg.clip_model = dict(
        name='pcm-tiny-vit-b32', checkpoint=toy_world['clip_head'],
        model_config=osp.join(clip_dir, 'pcm-tiny-vit-b32.json'))
    config = osp.join(str(root), 'toy_pcm.py')
    cfg.dump(config)
    return config


def free_port() -> int:
    """A TCP port nobody listens on now, for a torchrun rendezvous.

    Fixed ports collide when two test sessions (or a lingering socket)
    hold them: torchrun then fails with EADDRINUSE.
    """
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def failed_run(proc, cmd) -> str:
    """The whole story of a failed tool run, for the assertion message.

    Nothing is cut: a torchrun rank's error sits anywhere in its output
    (a SIGABRT once lost its cause to a 4,000-character tail). The text is
    also kept in ``work_dirs/test_failures/`` for CI logs that truncate.
    """
    import time
    text = (f'command: {" ".join(map(str, cmd))}\nexit {proc.returncode}\n'
            f'--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}')
    folder = osp.join(REPO_ROOT, 'work_dirs', 'test_failures')
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{time.strftime("%Y%m%d-%H%M%S")}-'
                    f'{os.getpid()}.log')
    with open(path, 'w') as f:
        f.write(text)
    return f'{text}\n(kept in {path})'


def run_tool(tool: str, args, *, torchrun=False, check=True):
    """Run ``tools/<tool>`` like a user: one process, or 2 under torchrun
    (on a free port).

    ``OMP_NUM_THREADS=1`` as torchrun sets it, so single- and multi-process
    runs use the same kernels and produce the same bytes.
    """
    import subprocess
    import sys
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
               TOKENIZERS_PARALLELISM='false')
    launcher = [sys.executable]
    if torchrun:
        launcher += ['-m', 'torch.distributed.run', '--nproc_per_node', '2',
                     '--master_port', str(free_port())]
    cmd = launcher + [osp.join(REPO_ROOT, 'tools', tool)] + [
        str(a) for a in args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(failed_run(proc, cmd))
    return proc


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for a module (two are ~3x slower on 2 busy cores)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tool_main(relpath: str):
    """A tool's ``main`` imported in-process (importing it is the cost).

    Args:
        relpath (str): e.g. ``'tools/build_vocab.py'``.
    """
    import importlib.util
    import re
    import sys
    name = 'tool_' + re.sub(r'\W', '_', relpath)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO_ROOT, relpath))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].main


def run_tool_main(relpath: str, argv) -> int:
    """Call a tool's ``main`` in-process; returns its exit code."""
    return tool_main(relpath)([str(a) for a in argv])


def make_char_device(path) -> None:
    """Create a character device with /dev/null's numbers at ``path``
    (skip the test where mknod is not allowed: it needs root)."""
    import stat
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip('mknod needs root')
