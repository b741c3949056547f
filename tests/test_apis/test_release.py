"""Released models: a safetensors folder that stands alone."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch

from tests.helpers import write_images


def test_release_stands_alone_and_captions_like_the_checkpoint(
        checkpoint, toy_world, tmp_path):
    from pcm_plugin.apis import ImageCaptioner, publish_model
    config, ckpt, _ = checkpoint
    out = str(tmp_path / 'published')
    manifest = publish_model(config, ckpt, out, with_clip=True,
                             metrics=dict(CIDEr=1.5))
    assert sorted(os.listdir(out)) == sorted([
        'README.md', 'clip_checkpoint.pt', 'clip_head.safetensors',
        'concept_bank.npz', 'config.py', 'model.safetensors',
        'pcm-tiny-vit-b32.json', 'release.json', 'tokenizer.json'])
    assert manifest['name'] == 'published'
    assert manifest['metrics'] == dict(CIDEr=1.5)
    # No path of the training machine is needed: move the folder away.
    moved = str(tmp_path / 'elsewhere' / 'pcm-toy')
    shutil.move(out, moved)
    text = open(osp.join(moved, 'config.py')).read()
    for path in (toy_world['tokenizer'], toy_world['concept_bank'],
                 toy_world['clip_head']):
        assert path not in text
    images = write_images(str(tmp_path), n=3)
    reference = ImageCaptioner(config, ckpt)
    released = ImageCaptioner(moved)
    assert released(images) == reference(images)
    ref_state = reference.model.state_dict()
    for key, value in released.model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key
    # The concept bank is still swappable for cross-domain tests.
    assert released.model.mixup.concept_words == \
        reference.model.mixup.concept_words


def test_test_tool_and_caption_tool_take_a_release(checkpoint, tmp_path,
                                                   tool_in_process):
    config, ckpt, _ = checkpoint
    release = str(tmp_path / 'rel')
    tool_in_process('tools/publish_model.py', [config, ckpt, release])
    images = write_images(str(tmp_path), n=2)
    a = tool_in_process('tools/caption_image.py', [config, ckpt, *images])
    b = tool_in_process('tools/caption_image.py', [release, *images])
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 2
    m1, m2 = tmp_path / 'm1.json', tmp_path / 'm2.json'
    tool_in_process('tools/test.py', [config, ckpt, '--out', m1,
                                      '--work-dir', tmp_path / 't1'])
    tool_in_process('tools/test.py', [release, '--out', m2, '--work-dir',
                                      tmp_path / 't2'])
    assert json.loads(m1.read_text()) == json.loads(m2.read_text())


def test_bad_input_publish_into_an_existing_folder_is_refused(checkpoint,
                                                              tmp_path):
    from pcm_plugin.apis import publish_model
    config, ckpt, _ = checkpoint
    out = tmp_path / 'taken'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='taken exists'):
        publish_model(config, ckpt, str(out))
    assert os.listdir(out) == ['keep.txt']


def test_bad_input_publish_of_a_mismatched_checkpoint_writes_nothing(
        checkpoint, tmp_path, tool_in_process):
    config, _, _ = checkpoint
    bad = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'decoder.embed.weight': torch.zeros(3, 3)}),
               bad)
    proc = tool_in_process('tools/publish_model.py',
                           [config, bad, tmp_path / 'rel'], check=False)
    assert proc.returncode != 0 and 'other.pth' in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('error: ')
    assert not (tmp_path / 'rel').exists()
    assert not list(tmp_path.glob('rel.tmp*'))


def test_bad_input_truncated_release_weights_name_the_file(checkpoint,
                                                           tmp_path):
    from pcm_plugin.apis import publish_model
    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    config, ckpt, _ = checkpoint
    out = tmp_path / 'rel'
    publish_model(config, ckpt, str(out))
    weights = out / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match='model.safetensors could not be '
                       'read.*truncated'):
        load_local_checkpoint(str(weights))


def test_bad_input_folder_that_is_not_a_release(tmp_path):
    from pcm_plugin.apis import resolve_release
    with pytest.raises(FileNotFoundError, match='is not a released model.*'
                       'publish_model.py'):
        resolve_release(str(tmp_path))
