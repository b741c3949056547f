"""Shared fixtures: tiny random CLIP checkpoints, concept banks, tokenizers.

Everything is built in a temporary directory per test session; nothing is
downloaded. The constants and functions the tests share are in
:mod:`tests.helpers`.
"""
import os.path as osp

import pytest

# The helpers import torch and mmengine (and through them Hugging Face
# libraries): after the start-up, which the repository's conftest.py runs.
from tests.helpers import (
    CAPTIONS,
    SHARED_DATA,
    call_tool,
    random_unit_rows,
)


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


@pytest.fixture(scope='session')
def tiny_bank(tmp_path_factory) -> str:
    """A 12-word concept bank with random unit 32-d rows (tiny CLIP's Dg)."""
    from pcm_plugin.models.concept_bank import save_concept_bank
    words = [f'concept{i}' for i in range(12)]
    path = str(tmp_path_factory.mktemp('bank') / 'bank.npz')
    save_concept_bank(path, words, random_unit_rows(12, 32))
    return path


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


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for a module (two are ~3x slower on 2 busy cores)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tool_in_process(capfd):
    """``run(relpath, args, check=True)``: a tool's ``main(argv)`` called
    in this process as ``python TOOL ARGS`` would run it, its stdout and
    stderr captured (:func:`tests.helpers.call_tool`); returns a
    ``subprocess.CompletedProcess``."""
    def run(relpath, args, *, check=True):
        return call_tool(relpath, args, capfd, check=check)
    return run
