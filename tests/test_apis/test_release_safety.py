"""A one-file release is data only: nothing in it runs when it is read.

A crafted ``.safetensors`` whose metadata config would write a marker
file when executed (the old format kept the config as Python text), or
that names a dotted import path as a ``type`` (mmengine imports and calls
such names), is refused by every entry point, and the marker never
appears; the old format is read only behind the trust switch.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import write_images


def _python_config(marker) -> str:
    """A Python config that creates ``marker`` when it is executed."""
    return (f'open({str(marker)!r}, "w").write("ran")\n'
            "model = dict(type='PCMCaptioner')\n")


def _crafted_release(path, metadata) -> str:
    from safetensors.torch import save_file
    save_file({'w': torch.zeros(1)}, str(path), metadata=metadata)
    return str(path)


@pytest.fixture
def old_format_release(tmp_path):
    """A one-file release in the old format, whose config runs code."""
    from pcm_plugin.apis.release import PYTHON_CONFIG_KEY
    marker = tmp_path / 'MARKER'
    path = _crafted_release(tmp_path / 'evil.safetensors',
                            {PYTHON_CONFIG_KEY: _python_config(marker)})
    return path, marker


@pytest.fixture
def dotted_type_release(tmp_path):
    """A JSON config naming ``subprocess.run`` as the model's type."""
    from pcm_plugin.apis.release import CONFIG_KEY
    marker = tmp_path / 'MARKER'
    config = dict(model=dict(type='subprocess.run',
                             args=['touch', str(marker)]))
    path = _crafted_release(tmp_path / 'evil.safetensors',
                            {CONFIG_KEY: json.dumps(config)})
    return path, marker


def test_old_format_config_is_refused_by_the_inferencer(
        old_format_release, monkeypatch):
    from pcm_plugin.apis import PCMCaptionInferencer
    from pcm_plugin.engine.checkpoint import TRUST_ENV
    monkeypatch.delenv(TRUST_ENV, raising=False)
    path, marker = old_format_release
    with pytest.raises(ValueError, match='evil.safetensors.*Python.*'
                       '--trust-checkpoint'):
        PCMCaptionInferencer(path)
    assert not marker.exists()


def test_old_format_config_runs_only_when_trusted(old_format_release,
                                                  monkeypatch):
    """The switch is what lets it run: with it the (benign) code runs."""
    from pcm_plugin.apis import resolve_release
    from pcm_plugin.engine.checkpoint import TRUST_ENV
    path, marker = old_format_release
    monkeypatch.setenv(TRUST_ENV, '1')
    config, weights = resolve_release(path)
    assert marker.read_text() == 'ran' and weights == path
    assert config.model.type == 'PCMCaptioner'


def test_dotted_type_in_a_json_config_is_refused(dotted_type_release):
    from pcm_plugin.apis import PCMCaptionInferencer
    path, marker = dotted_type_release
    with pytest.raises(ValueError, match=r"evil.safetensors.*'subprocess"
                       r"\.run'.*no registry"):
        PCMCaptionInferencer(path)
    assert not marker.exists()


@pytest.mark.parametrize('crafted', ['old_format_release',
                                     'dotted_type_release'])
def test_tools_refuse_a_crafted_release_in_one_line(crafted, request,
                                                    tmp_path,
                                                    tool_in_process):
    path, marker = request.getfixturevalue(crafted)
    image = write_images(str(tmp_path), n=1)[0]
    for tool, args in (('caption_image.py', [path, image]),
                       ('test.py', [path, '--work-dir', tmp_path / 'w'])):
        proc = tool_in_process(f'tools/{tool}', args, check=False)
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith('error: ') and 'evil.safetensors' in last
        assert not marker.exists(), tool


def test_caption_tool_reads_the_old_format_with_the_switch(
        old_format_release, tmp_path, tool_in_process):
    """--trust-checkpoint reaches the release's config (the crafted file
    then fails to build, after its code ran: that is what trust means)."""
    path, marker = old_format_release
    image = write_images(str(tmp_path), n=1)[0]
    proc = tool_in_process('tools/caption_image.py',
                           [path, image, '--trust-checkpoint'], check=False)
    assert marker.read_text() == 'ran', proc.stderr


def test_test_tool_reads_the_old_format_with_the_switch(old_format_release,
                                                        tmp_path,
                                                        tool_in_process):
    """tools/test.py too: the switch acts before the release is read; in
    this process, it is off again after the run."""
    from pcm_plugin.engine.checkpoint import checkpoints_trusted
    path, marker = old_format_release
    tool_in_process('tools/test.py', [path, '--trust-checkpoint',
                                      '--work-dir', tmp_path / 'w'],
                    check=False)
    assert marker.read_text() == 'ran'
    assert not checkpoints_trusted()


def test_a_published_one_file_release_keeps_its_config_as_json(checkpoint,
                                                                tmp_path):
    from mmengine.config import Config

    from pcm_plugin.apis import resolve_release
    from pcm_plugin.apis.release import (
        CONFIG_KEY,
        PYTHON_CONFIG_KEY,
        publish_model,
    )
    from pcm_plugin.clip.release_tower import safetensors_metadata
    config, ckpt, _ = checkpoint
    out = str(tmp_path / 'pcm-toy.safetensors')
    publish_model(config, ckpt, out)
    meta = safetensors_metadata(out)
    assert PYTHON_CONFIG_KEY not in meta
    stored = json.loads(meta[CONFIG_KEY])
    cfg, _ = resolve_release(out)
    assert cfg.to_dict() == stored
    source = Config.fromfile(config)
    assert stored['model']['encoder'] == json.loads(json.dumps(
        source.model.encoder.to_dict()))
    assert stored['model']['tokenizer'] == 'from_weights'


@pytest.mark.slow
def test_crafted_release_through_a_fresh_interpreter(old_format_release,
                                                     tmp_path):
    """``ImageCaptioner(path)`` in a new process from another folder."""
    path, marker = old_format_release
    from pcm_plugin.engine.checkpoint import TRUST_ENV
    code = ('from pcm_plugin.apis import ImageCaptioner\n'
            f'ImageCaptioner({path!r})\n')
    env = {k: v for k, v in os.environ.items() if k != TRUST_ENV}
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode != 0 and 'trust-checkpoint' in proc.stderr
    assert not marker.exists()
