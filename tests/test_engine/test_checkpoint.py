"""Checkpoint loading never runs code from a file unless told to."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from pcm_plugin.engine.checkpoint import (
    TRUST_ENV,
    load_local_checkpoint,
    safe_globals,
    trust_checkpoints,
)
from tests import payloads
from tests.helpers import REPO_ROOT, dump_captioning_config


class _RunsCode:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'released_model.pth'
    torch.save(dict(state_dict={'w': torch.zeros(2)},
                    meta=_RunsCode(str(marker))), path)
    return str(path), marker


@pytest.fixture(autouse=True)
def untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def test_mmengine_style_checkpoint_loads_in_safe_mode(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    path = tmp_path / 'epoch_1.pth'
    buffer = HistoryBuffer()
    buffer.update(0.5)
    torch.save(dict(state_dict={'w': torch.ones(3)},
                    message_hub=dict(log_scalars={'loss': buffer},
                                     runtime_info={'x': np.float64(2.5),
                                                   'a': np.arange(3)})),
               path)
    loaded = load_local_checkpoint(str(path))
    assert torch.equal(loaded['state_dict']['w'], torch.ones(3))
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5
    np.testing.assert_array_equal(
        loaded['message_hub']['runtime_info']['a'], np.arange(3))


def test_crafted_checkpoint_is_refused_and_nothing_runs(crafted):
    path, marker = crafted
    with pytest.raises(pickle.UnpicklingError,
                       match=r'released_model.pth was refused.*'
                       r'--trust-checkpoint'):
        load_local_checkpoint(path)
    assert not marker.exists()
    # Through mmengine's loader (load_from, --resume, tools/test.py).
    from mmengine.runner import load_checkpoint
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(2, 2), path)
    assert not marker.exists()


def test_trust_switch_unpickles_fully(crafted):
    path, marker = crafted
    trust_checkpoints()
    try:
        load_local_checkpoint(path)
    finally:
        trust_checkpoints(False)
    assert marker.exists()


def test_text_file_as_checkpoint_names_the_file(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('not a checkpoint')
    with pytest.raises((RuntimeError, pickle.UnpicklingError),
                       match='notes.pth'):
        load_local_checkpoint(str(path))


# Every entry point that loads weights: test, caption, publish, visualize,
# convert an official checkpoint, fine-tune (load_from) and resume.
TOOL_ARGS = {
    'test': lambda ckpt, image, out: ['tools/test.py', ckpt],
    'caption': lambda ckpt, image, out: ['tools/caption_image.py', ckpt,
                                         image],
    'publish': lambda ckpt, image, out: ['tools/publish_model.py', ckpt,
                                         out],
    'visualize': lambda ckpt, image, out: [
        'tools/visualize_mixup.py', ckpt, image, '--out-dir', out],
    'convert': lambda ckpt, image, out: [
        'tools/convert_official_checkpoint.py', ckpt, image, image, out,
        '--config'],
    'fine-tune': lambda ckpt, image, out: [
        'tools/train.py', '--cfg-options', f'load_from={ckpt}'],
    'resume': lambda ckpt, image, out: ['tools/train.py', '--resume', ckpt],
}
PAYLOADS = {'reduce': payloads.reduce_payload,
            'getattr': payloads.getattr_chain_payload}


@pytest.fixture(params=list(PAYLOADS))
def crafted_real(request, toy_world, tmp_path):
    """A real toy model's checkpoint with a payload before its pickle."""
    from pcm_plugin.registry import MODELS
    from pcm_plugin.testing.toy_features import toy_config
    marker = tmp_path / 'pwned'
    state = MODELS.build(toy_config(toy_world, str(tmp_path)).model)
    path = payloads.crafted_checkpoint(
        tmp_path / 'released_model.pth', PAYLOADS[request.param](marker),
        dict(state_dict=state.state_dict(), meta=dict(epoch=1)))
    return path, marker


@pytest.mark.slow
@pytest.mark.parametrize('tool', list(TOOL_ARGS))
def test_tools_refuse_the_crafted_checkpoint(crafted_real, toy_world,
                                             tmp_path, tool):
    """A runnable toy config: the tools get as far as the checkpoint."""
    from PIL import Image
    path, marker = crafted_real
    config = dump_captioning_config(toy_world, tmp_path)
    image = tmp_path / 'a.png'
    Image.new('RGB', (40, 40)).save(image)
    script, *args = TOOL_ARGS[tool](path, str(image), str(tmp_path / 'rel'))
    if tool == 'convert':
        cmd = [script, *args, config]
    else:
        cmd = [script, config, *args]
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    env.pop(TRUST_ENV, None)
    out = subprocess.run([sys.executable, *cmd], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines()
              if 'released_model.pth was refused' in line]
    assert len(errors) == 1 and 'Traceback' not in out.stderr, out.stderr
    assert not marker.exists()
    assert not (tmp_path / 'rel').exists()


def test_python_entry_points_refuse_the_crafted_checkpoint(crafted_real,
                                                           toy_world,
                                                           tmp_path):
    """``get_model(pretrained=)`` and both inferencer classes."""
    import mmpretrain

    from pcm_plugin.apis import ImageCaptioner, PCMCaptionInferencer
    path, marker = crafted_real
    config = dump_captioning_config(toy_world, tmp_path)
    calls = {
        'get_model': lambda: mmpretrain.get_model(config, pretrained=path),
        'PCMCaptionInferencer': lambda: PCMCaptionInferencer(config, path),
        'ImageCaptioner': lambda: ImageCaptioner(config, path),
    }
    for name, call in calls.items():
        with pytest.raises(pickle.UnpicklingError,
                           match='released_model.pth was refused'):
            call()
        assert not marker.exists(), name


@pytest.mark.parametrize('payload', [payloads.getattr_chain_payload,
                                     payloads.globals_chain_payload])
def test_getattr_chains_are_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / 'pwned'
    path = payloads.crafted_checkpoint(
        tmp_path / 'ckpt.pth', payload(marker),
        dict(state_dict={'w': torch.ones(2)}))
    with pytest.raises(pickle.UnpicklingError,
                       match=r'ckpt.pth was refused.*looks up attribute'):
        load_local_checkpoint(path)
    assert not marker.exists()


def _allowed_global_paths():
    """The names the loader lets a file use, as torch matches them."""
    from torch._weights_only_unpickler import _get_user_allowed_globals
    with torch.serialization.safe_globals(safe_globals()):
        return sorted(_get_user_allowed_globals())


def test_fuzz_every_allowed_global_in_a_reducing_position(tmp_path):
    """Each allowlisted global called with arguments that reach for code,
    its result then called (REDUCE) or planted as ``__setstate__``
    (BUILD): refused with one message naming the file, nothing run."""
    marker = tmp_path / 'pwned'
    allowed = _allowed_global_paths()
    assert 'builtins.getattr' in allowed  # answered by the stand-in
    cases = payloads.fuzz_payloads(allowed, str(marker))
    assert len(cases) == 2 * 7 * len(allowed)
    for i, (label, payload) in enumerate(cases):
        path = payloads.crafted_checkpoint(
            tmp_path / f'fuzz{i}.pth', payload,
            dict(state_dict={'w': torch.ones(2)}))
        with pytest.raises((pickle.UnpicklingError, RuntimeError),
                           match=f'fuzz{i}.pth (was refused|could not be '
                           'read)') as caught:
            load_local_checkpoint(path)
        assert '\n' not in str(caught.value), label
        assert not marker.exists(), label


def test_history_buffer_round_trip_stays_a_history_buffer(tmp_path):
    """What the guard turns into is mmengine's own class, with its
    statistics: resume reads it back as written."""
    from mmengine.logging.history_buffer import HistoryBuffer
    buffer = HistoryBuffer([1.0, 3.0], [1, 1])
    buffer.statistics('mean')  # fills the statistics table
    path = tmp_path / 'hub.pth'
    torch.save(dict(hub=buffer, again=[buffer]), path)
    loaded = load_local_checkpoint(str(path))
    assert type(loaded['hub']) is HistoryBuffer
    assert loaded['again'][0] is loaded['hub']
    assert loaded['hub'].mean() == 2.0 and loaded['hub'].max() == 3.0


def _save(module, path):
    torch.save(dict(state_dict=module.state_dict()), path)
    return str(path)


def test_bad_input_checkpoint_of_another_vocabulary_is_refused(tmp_path):
    from pcm_plugin.engine.checkpoint import check_checkpoint_matches
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4),
                                torch.nn.Linear(4, 10))
    other_vocab = torch.nn.Sequential(torch.nn.Embedding(12, 4),
                                      torch.nn.Linear(4, 12))
    path = _save(other_vocab, tmp_path / 'v12.pth')
    with pytest.raises(ValueError, match=r'v12.pth does not fit the model: '
                       r'3 tensors have other shapes .*\(12, 4\) vs \(10, 4\)'
                       r'.*another vocabulary'):
        check_checkpoint_matches(model, path)
    # A checkpoint of something else entirely.
    path = _save(torch.nn.Linear(3, 3), tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='lacks 3 of the model'):
        check_checkpoint_matches(model, path)
    # Extra tensors (a mix-up model's, given to Base) are fine.
    bigger = torch.nn.Sequential(torch.nn.Embedding(10, 4),
                                 torch.nn.Linear(4, 10),
                                 torch.nn.Linear(4, 4))
    check_checkpoint_matches(model, _save(bigger, tmp_path / 'big.pth'))


def test_bad_input_test_tool_refuses_a_mismatched_checkpoint(
        toy_world, tmp_path, tool_in_process):
    from pcm_plugin.registry import MODELS
    from pcm_plugin.testing.toy_features import toy_config
    cfg = toy_config(toy_world, str(tmp_path / 'work'))
    config = str(tmp_path / 'toy.py')
    cfg.dump(config)
    state = MODELS.build(cfg.model).state_dict()
    w = state['decoder.predictor.1.weight']
    state['decoder.predictor.1.weight'] = torch.cat([w, w[:1]])
    path = tmp_path / 'v_plus_1.pth'
    torch.save(dict(state_dict=state), path)
    out = tool_in_process('tools/test.py', [
        config, path, '--work-dir', tmp_path / 'test'], check=False)
    assert out.returncode != 0
    assert 'v_plus_1.pth does not fit the model' in out.stderr
    assert 'Epoch(test)' not in out.stdout + out.stderr  # nothing tested
