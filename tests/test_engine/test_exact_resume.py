"""Resume is exact and a kill during a save loses nothing."""
import os
import re
import signal

import pytest
import torch

from pcm_plugin.testing.toy_features import toy_config


def _train(cfg):
    from mmengine.runner import Runner
    cfg.experiment_name = f'exp{torch.randint(0, 10**9, ()).item()}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_resumed_run_equals_the_uninterrupted_one_bitwise(toy_world,
                                                          tmp_path):
    def config(work_dir, epochs):
        cfg = toy_config(toy_world, str(tmp_path / work_dir),
                         max_epochs=epochs)
        cfg.model.mixup.update(dropout=0.3, noise_var=0.016)
        cfg.train_cfg.val_interval = 1  # validation between the epochs
        cfg.default_hooks.checkpoint.update(save_best=None, interval=1)
        assert any(h['type'] == 'RNGStateHook' for h in cfg.custom_hooks)
        return cfg

    assert_resume_is_exact(config)


def test_validation_between_epochs_leaves_training_unchanged(toy_world,
                                                             tmp_path):
    """Validation draws from the global generator (its data loader seeds
    itself); RNGStateHook gives the draws back, so a run validating after
    every epoch (the demo) ends on the weights of one validating at the
    end only (an ablation cell), bit for bit."""
    def weights(work_dir, val_interval, hooks=True):
        cfg = toy_config(toy_world, str(tmp_path / work_dir), max_epochs=3)
        cfg.model.mixup.update(dropout=0.3, noise_var=0.016)
        cfg.train_cfg.val_interval = val_interval
        cfg.default_hooks.checkpoint.update(save_best=None, interval=3)
        if not hooks:
            cfg.custom_hooks = []
        return _train(cfg)

    every_epoch, at_the_end = weights('every', 1), weights('end', 3)
    for key in every_epoch:
        assert torch.equal(every_epoch[key], at_the_end[key]), key
    # Without the hook, validation changes the training that follows.
    bare_end = weights('end_bare', 3, hooks=False)
    assert all(torch.equal(bare_end[k], at_the_end[k]) for k in bare_end)
    changed = weights('every_bare', 1, hooks=False)
    assert any(not torch.equal(changed[k], bare_end[k]) for k in changed)


def assert_resume_is_exact(config):
    """2 epochs in one run = 1 epoch, then ``--resume`` to 2, bit for bit.

    Args:
        config: ``config(work_dir_name, max_epochs)`` -> a Runner config.

    Returns:
        dict: The uninterrupted run's final state dict.
    """
    whole = _train(config('whole', 2))
    _train(config('cut', 1))
    cfg = config('cut', 2)
    cfg.resume = True
    resumed = _train(cfg)
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    return whole


def test_rng_states_round_trip_through_the_safe_loader(tmp_path):
    import random

    import numpy as np

    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    from pcm_plugin.engine.rng_state_hook import rng_states, set_rng_states
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    path = tmp_path / 'c.pth'
    torch.save(dict(rng_states=rng_states()), path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    set_rng_states(load_local_checkpoint(str(path))['rng_states'])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_a_kill_during_a_checkpoint_save_loses_nothing(toy_world, tmp_path,
                                                       monkeypatch):
    """max_keep_ckpts=1: the old checkpoint survives a save cut short, and
    last_checkpoint never names a broken file."""
    import os.path as osp

    from mmengine.runner import Runner

    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    work = tmp_path / 'work'

    def config(epochs):
        cfg = toy_config(toy_world, str(work), max_epochs=epochs)
        cfg.default_hooks.checkpoint.update(save_best=None, interval=1,
                                            max_keep_ckpts=1)
        cfg.train_cfg.val_interval = 10
        return cfg

    _train(config(1))
    assert (work / 'epoch_1.pth').is_file()
    real_save = Runner.save_checkpoint

    def killed_mid_save(self, out_dir, filename, *args, **kwargs):
        with open(osp.join(out_dir, filename), 'wb') as f:
            f.write(b'PK\x03\x04 cut short')  # a torch zip, cut short
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, 'save_checkpoint', killed_mid_save)
    cfg = config(2)
    cfg.resume = True
    try:
        _train(cfg)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(Runner, 'save_checkpoint', real_save)
    last = (work / 'last_checkpoint').read_text().strip()
    assert osp.basename(last) == 'epoch_1.pth'
    assert 'state_dict' in load_local_checkpoint(last)
    assert sorted(p.name for p in work.glob('epoch_*')) == ['epoch_1.pth']
    # And the run resumes from it to the end.
    cfg = config(2)
    cfg.resume = True
    _train(cfg)
    assert sorted(p.name for p in work.glob('epoch_*')) == ['epoch_2.pth']


def _state(path):
    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    return load_local_checkpoint(str(path))['state_dict']


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(
        toy_world, tmp_path):
    """A real SIGKILL at iteration 11 of 16 (epoch 2, batch 3), ``--resume``
    from the resume point of iteration 9: the resumed run trains batches
    2-8 of epoch 2 only and ends on the uninterrupted run's weights, bit
    for bit (dropout and CapDec noise on)."""
    from tests.helpers import run_tool

    def config(name, **extra):
        cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=2)
        cfg.model.mixup.update(dropout=0.3, noise_var=0.016)
        cfg.default_hooks.checkpoint.update(save_best=None, interval=1,
                                            resume_interval=3)
        cfg.merge_from_dict(extra)
        path = str(tmp_path / f'{name}.py')
        cfg.dump(path)
        return path

    plain = config('plain')
    killer = config('killer', custom_imports=dict(
        imports=['pcm_plugin', 'pcm_plugin.testing.kill_hook'],
        allow_failed_imports=False), custom_hooks=[
            dict(type='RNGStateHook'),
            dict(type='KillAtIterationHook', iteration=11)])
    run_tool('train.py', [plain, '--work-dir', tmp_path / 'whole'])
    cut = tmp_path / 'cut'
    killed = run_tool('train.py', [killer, '--work-dir', cut], check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (cut / 'last_checkpoint').read_text().strip() == str(
        cut / 'iter_9.pth')
    assert sorted(p.name for p in cut.glob('*.pth')) == [
        'epoch_1.pth', 'iter_9.pth']
    resumed = run_tool('train.py', [plain, '--work-dir', cut, '--resume'])
    log = resumed.stdout + resumed.stderr
    assert 'Resuming epoch 2 at batch 2 of 8' in log
    trained = re.findall(r'Epoch\(train\) \[(\d)\]\[(\d)/8\]', log)
    assert trained == [('2', str(b)) for b in range(2, 9)]
    whole, again = _state(tmp_path / 'whole' / 'epoch_2.pth'), _state(
        cut / 'epoch_2.pth')
    assert whole.keys() == again.keys()
    for key in whole:
        assert torch.equal(whole[key], again[key]), key
    # The epoch checkpoint replaced the resume points.
    assert not list(cut.glob('iter_*.pth'))


def test_bad_input_resume_interval_needs_epoch_checkpoints():
    from pcm_plugin.engine import AtomicCheckpointHook
    with pytest.raises(ValueError, match='resume_interval needs '
                       'by_epoch=True.*use interval'):
        AtomicCheckpointHook(interval=100, by_epoch=False,
                             resume_interval=10)
    with pytest.raises(ValueError, match='positive'):
        AtomicCheckpointHook(interval=1, resume_interval=0)


class _StopAfter:
    """Stop training (as a kill would) once ``iteration`` iterations are
    done, after the checkpoint hook's saves."""

    def __new__(cls, iteration):
        from mmengine.hooks import Hook

        class StopAfter(Hook):
            priority = 'LOWEST'

            def after_train_iter(self, runner, batch_idx, data_batch=None,
                                 outputs=None):
                if runner.iter + 1 == iteration:
                    raise KeyboardInterrupt
        return StopAfter()


def _layout_run(toy_world, work, *, batch_size, resume=None, stop=None):
    """Toy run of 2 epochs (64 samples) with resume points every 3
    iterations; returns the runner and its log text."""
    from mmengine.runner import Runner
    cfg = toy_config(toy_world, str(work), max_epochs=2)
    cfg.train_dataloader.batch_size = batch_size
    cfg.default_hooks.checkpoint.update(save_best=None, interval=1,
                                        resume_interval=3)
    cfg.train_cfg.val_interval = 10
    cfg.experiment_name = f'layout{torch.randint(0, 10**9, ()).item()}'
    if resume:
        cfg.resume, cfg.load_from = True, str(resume)
    runner = Runner.from_cfg(cfg)
    # Two runs started in the same second share mmengine's timestamped log
    # file: this run's training lines are the ones written after here.
    start = os.path.getsize(runner.logger.log_file)
    if stop:
        runner.register_hook(_StopAfter(stop))
    try:
        runner.train()
    except KeyboardInterrupt:
        pass
    with open(runner.logger.log_file) as f:
        f.seek(start)
        log = f.read()
    return runner, log


def test_bad_input_resume_mid_epoch_with_another_batch_size_is_refused(
        toy_world, tmp_path):
    """Before: 'Resuming epoch 2 at batch 11 of 5', nothing trained, exit
    0. Now one line naming the change and the fix; nothing trained."""
    work = tmp_path / 'work'
    _layout_run(toy_world, work, batch_size=8, stop=11)  # 8 batches/epoch
    assert (work / 'iter_9.pth').is_file()
    with pytest.raises(ValueError, match=(
            r'stopped at batch 1 of 8 in epoch 2.*batches_per_epoch 8 -> 4, '
            r'batch_size 8 -> 16.*epoch_1.pth')):
        _layout_run(toy_world, work, batch_size=16,
                    resume=work / 'iter_9.pth')
    assert not (work / 'epoch_2.pth').exists()


def test_resume_at_an_epoch_boundary_with_another_batch_size_trains_the_epoch(
        toy_world, tmp_path):
    work = tmp_path / 'work'
    _layout_run(toy_world, work, batch_size=8, stop=11)
    runner, log = _layout_run(toy_world, work, batch_size=16,
                              resume=work / 'epoch_1.pth')
    assert 'batches_per_epoch 8 -> 4' in log
    assert 'iteration counter goes from 8 to 4' in log
    trained = re.findall(r'Epoch\(train\) \[(\d)\]\[(\d)/(\d)\]', log)
    assert trained == [('2', str(b), '4') for b in range(1, 5)]
    assert runner.iter == 8 and runner.epoch == 2


def test_same_layout_resume_is_unchanged(toy_world, tmp_path):
    """The layout check passes an unchanged run through: it resumes at
    batch 2 (after the resume point of iteration 9) as before."""
    work = tmp_path / 'work'
    _layout_run(toy_world, work, batch_size=8, stop=11)
    _, log = _layout_run(toy_world, work, batch_size=8,
                         resume=work / 'iter_9.pth')
    assert 'Resuming epoch 2 at batch 2 of 8' in log
    assert 'another layout' not in log
