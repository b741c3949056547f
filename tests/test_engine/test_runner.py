"""Runner level: train a few iterations, predict + metric, resume, test."""
import os.path as osp

import pytest
import torch

from pcm_plugin.testing.toy_features import toy_config


def build(cfg):
    from mmengine.runner import Runner
    cfg.experiment_name = f'exp{torch.randint(0, 10**9, ()).item()}'
    return Runner.from_cfg(cfg)


def test_train_predict_resume_and_test(toy_world, tmp_path):
    world = toy_world
    work_dir = str(tmp_path / 'work')
    runner = build(toy_config(world, work_dir, max_epochs=2))
    runner.train()
    assert runner.iter == 2 * 8 and runner.epoch == 2
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    scalars = runner.message_hub.log_scalars
    assert 'val/CIDEr' in scalars or 'CIDEr' in str(list(scalars))
    lr_at_16 = runner.optim_wrapper.get_lr()['lr'][0]

    # Resume: continue to epoch 3 from the saved checkpoint (torch>=2.6
    # loading goes through pcm_plugin's checkpoint loader).
    cfg = toy_config(world, work_dir, max_epochs=3)
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
    cfg = toy_config(world, str(tmp_path / 'test'))
    cfg.load_from = osp.join(work_dir, 'epoch_3.pth')
    tester = build(cfg)
    metrics = tester.test()
    assert set(metrics) >= {'Bleu_1', 'Bleu_4', 'CIDEr'}
    assert all(0.0 <= v for v in metrics.values())
    # The checkpoint's weights were loaded (not a fresh init).
    state = torch.load(cfg.load_from, map_location='cpu', weights_only=False)
    for name, param in tester.model.state_dict().items():
        torch.testing.assert_close(param, state['state_dict'][name])
