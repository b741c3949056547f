"""Runner level: train a few iterations, predict + metric, resume, test."""
import os.path as osp

import pytest
import torch

from tests.conftest import REPO_ROOT


def tiny_cfg(world, work_dir, *, max_epochs=2):
    """configs/pcm_coco.py shrunk to toy size and pointed at ``world``."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'pcm_coco.py'))
    small = dict(embed_dim=64, num_layers=1, num_heads=2, ffn_dim=128)
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'model.tokenizer': world['tokenizer'],
        'model.mixup.patch_dim': 48, 'model.mixup.global_dim': 32,
        'model.mixup.embed_dim': 64,
        'model.mixup.concept_bank': world['concept_bank'],
        'model.mixup.clip_head': world['clip_head'],
        'model.mixup.top_k': 3, 'model.mixup.dropout': 0.1,
        'model.encoder': dict(cfg.model.encoder, **small),
        'model.decoder': dict(cfg.model.decoder, **small, max_len=6),
        'model.max_len': 6,
        'param_scheduler': [dict(type='NoamLR', model_dim=64, warmup=8,
                                 factor=2.0, by_epoch=False)],
        'train_cfg.max_epochs': max_epochs,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
    })
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=8, num_workers=0, persistent_workers=False)
        part = 'train' if split == 'train' else 'test'
        loader.dataset.update(ann_file=world[f'{part}_ann'],
                              feature_dir=world[f'{part}_feats'])
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key] = dict(type='COCOCaptionMetric', ann_file=world['test_gt'],
                        scorers=('bleu', 'cider'))
    return cfg


@pytest.fixture(scope='module')
def world(tmp_path_factory, tiny_clip):
    from pcm_plugin.testing.toy_features import make_toy_feature_world
    paths = make_toy_feature_world(
        str(tmp_path_factory.mktemp('toy_world')),
        clip_checkpoint=tiny_clip[1], num_train=64, num_test=8)
    return dict(paths, clip_head=tiny_clip[1])


def build(cfg):
    from mmengine.runner import Runner
    cfg.experiment_name = f'exp{torch.randint(0, 10**9, ()).item()}'
    return Runner.from_cfg(cfg)


def test_train_predict_resume_and_test(world, tmp_path):
    work_dir = str(tmp_path / 'work')
    runner = build(tiny_cfg(world, work_dir, max_epochs=2))
    runner.train()
    assert runner.iter == 2 * 8 and runner.epoch == 2
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    scalars = runner.message_hub.log_scalars
    assert 'val/CIDEr' in scalars or 'CIDEr' in str(list(scalars))
    lr_at_16 = runner.optim_wrapper.get_lr()['lr'][0]

    # Resume: continue to epoch 3 from the saved checkpoint (torch>=2.6
    # loading goes through pcm_plugin's checkpoint loader).
    cfg = tiny_cfg(world, work_dir, max_epochs=3)
    cfg.resume = True
    resumed = build(cfg)
    resumed.train()
    assert resumed.iter == 3 * 8 and resumed.epoch == 3
    from pcm_plugin.engine.noam_lr import noam_lr
    assert lr_at_16 == pytest.approx(
        noam_lr(16, model_dim=64, warmup=8, factor=2.0))
    assert resumed.optim_wrapper.get_lr()['lr'][0] == pytest.approx(
        noam_lr(24, model_dim=64, warmup=8, factor=2.0))

    # Test from the checkpoint: predictions for every test image + metric.
    cfg = tiny_cfg(world, str(tmp_path / 'test'))
    cfg.load_from = osp.join(work_dir, 'epoch_3.pth')
    tester = build(cfg)
    metrics = tester.test()
    assert set(metrics) >= {'Bleu_1', 'Bleu_4', 'CIDEr'}
    assert all(0.0 <= v for v in metrics.values())
    # The checkpoint's weights were loaded (not a fresh init).
    state = torch.load(cfg.load_from, map_location='cpu', weights_only=False)
    for name, param in tester.model.state_dict().items():
        torch.testing.assert_close(param, state['state_dict'][name])
