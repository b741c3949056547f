"""model.mixup's patch_dim / global_dim / num_patches from the feature
stores' index.json: filled when unset, one message when wrong."""
import os.path as osp

import numpy as np
import pytest

from pcm_plugin.datasets.feature_layout import fill_feature_layout
from pcm_plugin.datasets.feature_store import store_layout, write_feature_store
from tests.helpers import failed_run

TOY = dict(patch_dim=48, global_dim=32, num_patches=49)  # the toy world's


def write_store(root, num_patches, patch_dim, global_dim):
    write_feature_store(str(root), ['1', '2'],
                        np.zeros((2, num_patches, patch_dim), np.float32),
                        np.zeros((2, global_dim), np.float32))
    return str(root)


def config(mixup, train_dir, test_dir):
    return dict(
        model=dict(type='PCMCaptioner', mixup=dict(type='PCMMixup', **mixup)),
        train_dataloader=dict(dataset=dict(type='SynthCaptionDataset',
                                           feature_dir=train_dir)),
        val_dataloader=None,
        test_dataloader=dict(dataset=dict(
            type='ConcatDataset', datasets=[dict(feature_dir=test_dir)])))


def test_store_layout_reads_the_index_only(tmp_path):
    root = write_store(tmp_path / 'store', 64, 1024, 768)
    for name in ('shard-00000.patch.npy', 'shard-00000.ids.json'):
        (tmp_path / 'store' / name).unlink()  # no shard is opened
    assert store_layout(root) == dict(patch_dim=1024, global_dim=768,
                                      num_patches=64)


def test_unset_keys_are_filled_from_the_stores(tmp_path):
    train = write_store(tmp_path / 'train', 49, 48, 32)
    test = write_store(tmp_path / 'test', 49, 48, 32)
    # One key None, one absent, one set to the right value.
    cfg = config(dict(patch_dim=None, num_patches=49), train, test)
    assert fill_feature_layout(cfg) == dict(patch_dim=48, global_dim=32)
    assert {k: cfg['model']['mixup'][k] for k in TOY} == TOY


def test_right_values_are_kept_and_nothing_is_filled(tmp_path):
    train = write_store(tmp_path / 'train', 49, 48, 32)
    cfg = config(dict(TOY), train, str(tmp_path / 'absent'))
    assert fill_feature_layout(cfg) == {}
    assert cfg['model']['mixup'] == dict(type='PCMMixup', **TOY)


def test_wrong_values_are_named_together_in_one_message(tmp_path):
    train = write_store(tmp_path / 'train', 49, 48, 32)
    cfg = config(dict(patch_dim=768, global_dim=512, num_patches=49), train,
                 str(tmp_path / 'absent'))
    with pytest.raises(ValueError) as err:
        fill_feature_layout(cfg)
    assert str(err.value) == (
        'model.mixup has patch_dim=768, global_dim=512, num_patches=49 but '
        f'the features in {train} (train_dataloader.dataset.feature_dir) '
        'have patch_dim=48, global_dim=32, num_patches=49: set '
        'model.mixup.patch_dim=48, global_dim=32, num_patches=49 in the '
        'config, or None to read them from the feature store')


def test_stores_of_two_backbones_are_refused(tmp_path):
    train = write_store(tmp_path / 'train', 49, 48, 32)
    test = write_store(tmp_path / 'test', 64, 1024, 768)
    with pytest.raises(ValueError) as err:
        fill_feature_layout(config({}, train, test))
    message = str(err.value)
    assert f'train_dataloader.dataset.feature_dir {train} has patch_dim=48' \
        in message
    assert ('test_dataloader.dataset.datasets[0].feature_dir '
            f'{test} has patch_dim=1024, global_dim=768, num_patches=64'
            in message)


def test_unset_keys_without_any_store_name_the_missing_stores(tmp_path):
    missing = str(tmp_path / 'nope')
    with pytest.raises(ValueError, match=(
            r'model\.mixup\.patch_dim, global_dim, num_patches not set, and '
            'no feature store of the config exists')) as err:
        fill_feature_layout(config({}, missing, missing))
    assert missing in str(err.value)


def test_a_model_built_with_unset_keys_names_all_of_them():
    from pcm_plugin.models import PCMMixup
    with pytest.raises(ValueError, match=r'model\.mixup\.patch_dim, '
                       'num_patches not set.*fill_feature_layout'):
        PCMMixup(global_dim=32, mode='none')


def run_train(run, config_file, *options):
    """``tools/train.py CONFIG --cfg-options ...`` by ``run`` (the
    ``tool_in_process`` fixture); returns the command and the run."""
    args = [config_file, '--cfg-options',
            'default_hooks.checkpoint.save_best=None', *options]
    return ['tools/train.py', *args], run('tools/train.py', args,
                                           check=False)


@pytest.fixture(scope='module')
def toy_config_file(toy_world, tmp_path_factory):
    from pcm_plugin.testing.toy_features import toy_config
    root = tmp_path_factory.mktemp('layout')
    path = str(root / 'toy_pcm.py')
    toy_config(toy_world, str(root / 'work'), max_epochs=1).dump(path)
    return path, root


def test_train_tool_fills_unset_keys_and_dumps_them(toy_config_file,
                                                    tool_in_process):
    path, root = toy_config_file
    cmd, proc = run_train(tool_in_process, path, 'model.mixup.patch_dim=None',
                          'model.mixup.global_dim=None',
                          'model.mixup.num_patches=None')
    assert proc.returncode == 0, failed_run(proc, cmd)
    assert osp.isfile(root / 'work' / 'epoch_1.pth')
    from mmengine.config import Config
    dumped = Config.fromfile(str(root / 'work' / 'toy_pcm.py'))
    assert {k: dumped.model.mixup[k] for k in TOY} == TOY


def test_train_tool_names_all_three_wrong_keys_in_one_line(
        toy_config_file, tool_in_process):
    path, _ = toy_config_file
    cmd, proc = run_train(tool_in_process, path, 'model.mixup.patch_dim=768',
                          'model.mixup.global_dim=512')
    assert proc.returncode == 1, failed_run(proc, cmd)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: model.mixup has patch_dim=768, '
                           'global_dim=512, num_patches=49 but the features')
    assert 'set model.mixup.patch_dim=48, global_dim=32, num_patches=49' \
        in last
    assert 'CLIP' not in last  # the config is to blame, not the checkpoint


@pytest.mark.parametrize('release', ['folder', 'model.safetensors'])
def test_a_release_of_a_config_with_unset_keys_carries_the_values(
        toy_world, tmp_path, release):
    """Published on the training machine (stores present), the release
    rebuilds with no store: its config holds the filled values."""
    import torch
    from mmengine.config import Config

    from pcm_plugin.apis.release import publish_model, resolve_release
    from pcm_plugin.registry import MODELS
    from tests.helpers import dump_captioning_config
    path = dump_captioning_config(toy_world, tmp_path)
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({f'model.mixup.{k}': None for k in TOY})
    cfg.dump(path)
    fill_feature_layout(cfg)
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)
    out = str(tmp_path / release)
    publish_model(path, ckpt, out)
    released, _ = resolve_release(out)
    released = released if isinstance(released, Config) \
        else Config.fromfile(released)
    assert {k: released.model.mixup[k] for k in TOY} == TOY

