"""The model zoo: PCM-Net names in mmpretrain, one-file releases."""
import os.path as osp

import pytest
import torch

from tests.helpers import REPO_ROOT, write_images


def test_list_models_after_import():
    import mmpretrain

    import pcm_plugin  # noqa: F401
    assert mmpretrain.list_models('pcm*') == [
        'pcm-net_vit-b32_coco', 'pcm-net_vit-b32_flickr30k',
        'pcm-net_vit-l14_coco', 'pcm-net_vit-l14_flickr30k']
    assert 'pcm-net_vit-b32_coco' in mmpretrain.list_models(
        task='Image Caption')


@pytest.mark.parametrize('name, vocab, proj, patches', [
    ('pcm-net_vit-b32_coco', 10202, (768, 512), 49),
    ('pcm-net_vit-l14_coco', 10202, (1024, 768), 64),
    ('pcm-net_vit-b32_flickr30k', 7555, (768, 512), 49),
    ('pcm-net_vit-l14_flickr30k', 7555, (1024, 768), 64),
])
def test_zoo_model_builds_without_any_file_and_says_what_it_lacks(
        name, vocab, proj, patches):
    """The official architectures, nothing read from disk: files come
    with the weights, and using one before loading them is a clear
    error."""
    import mmpretrain

    import pcm_plugin  # noqa: F401  registers the zoo
    model = mmpretrain.get_model(name)
    assert model.decoder.vocab_size == vocab
    assert tuple(model.mixup.clip_head.proj.shape) == proj
    inputs = dict(patch_feats=torch.randn(1, patches, proj[0]),
                  global_feat=torch.randn(1, proj[1]))
    with pytest.raises(RuntimeError, match='no concept bank.*from_weights'):
        model.generate(inputs)


@pytest.fixture(scope='module')
def one_file(checkpoint, tmp_path_factory):
    from pcm_plugin.apis import publish_model
    config, ckpt, _ = checkpoint
    out = str(tmp_path_factory.mktemp('one') / 'pcm-toy.safetensors')
    manifest = publish_model(config, ckpt, out)
    return config, ckpt, out, manifest


def test_one_file_release_equals_the_checkpoint(one_file, tmp_path):
    from pcm_plugin.apis import ImageCaptioner, is_release
    config, ckpt, out, manifest = one_file
    assert is_release(out) and manifest['name'] == 'pcm-toy'
    images = write_images(str(tmp_path), n=3)
    assert ImageCaptioner(out)(images) == ImageCaptioner(config, ckpt)(
        images)


def test_get_model_by_zoo_name_with_a_one_file_release(one_file,
                                                       tmp_path):
    """A zoo entry whose config takes every file from the weights (the toy
    architecture here, registered like configs/zoo/model-index.yml)."""
    import mmpretrain
    from mmengine.config import Config
    from mmpretrain.apis.model import ModelHub

    from pcm_plugin.registry import MODELS
    config, ckpt, out, _ = one_file
    zoo_cfg = Config.fromfile(config)
    zoo_cfg.merge_from_dict({
        'model.tokenizer': 'from_weights',
        'model.decoder.vocab_size': MODELS.build(
            zoo_cfg.model).decoder.vocab_size,
        'model.mixup.concept_bank': 'from_weights',
        'model.mixup.clip_head': 'from_weights'})
    zoo_cfg.dump(str(tmp_path / 'pcm-toy_zoo.py'))
    (tmp_path / 'model-index.yml').write_text(
        'Models:\n  - Name: pcm-toy_zoo\n    Config: pcm-toy_zoo.py\n'
        '    Results:\n      - Task: Image Caption\n        Dataset: toy\n'
        '        Metrics: {CIDEr: 0}\n    Weights: null\n')
    if not ModelHub.has('pcm-toy_zoo'):
        ModelHub.register_model_index(str(tmp_path / 'model-index.yml'))
    model = mmpretrain.get_model('pcm-toy_zoo', pretrained=out)
    reference = MODELS.build(Config.fromfile(config).model)
    from mmengine.runner import load_checkpoint
    load_checkpoint(reference, ckpt, map_location='cpu', logger='silent')
    reference.eval()
    torch.manual_seed(0)
    inputs = dict(patch_feats=torch.randn(4, 49, 48),
                  global_feat=torch.randn(4, 32))
    assert model.generate(inputs) == reference.generate(inputs)
    assert model.mixup.concept_words == reference.mixup.concept_words
    assert model.tokenizer.get_vocab() == reference.tokenizer.get_vocab()


def test_test_tool_takes_a_one_file_release(one_file, tmp_path,
                                            tool_in_process):
    import json
    config, ckpt, out, _ = one_file
    m1, m2 = tmp_path / 'm1.json', tmp_path / 'm2.json'
    tool_in_process('tools/test.py', [config, ckpt, '--out', m1,
                                      '--work-dir', tmp_path / 't1'])
    # The release's config names the training data; point it at the toy
    # test set as a user would.
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    tool_in_process('tools/test.py', [
        out, '--out', m2, '--work-dir', tmp_path / 't2', '--cfg-options',
        f'test_dataloader.dataset.ann_file='
        f'{cfg.test_dataloader.dataset.ann_file}'])
    assert json.loads(m1.read_text()) == json.loads(m2.read_text())
    assert osp.isfile(osp.join(REPO_ROOT, 'configs', 'zoo',
                               'model-index.yml'))
