"""The best checkpoint survives a kill during its replacement."""
import os.path as osp

import pytest

from pcm_plugin.engine.atomic_checkpoint_hook import AtomicCheckpointHook
from pcm_plugin.testing.toy_features import toy_config


@pytest.fixture
def trained_runner(toy_world, tmp_path):
    """A toy run of one epoch that keeps the best checkpoint by CIDEr."""
    from mmengine.runner import Runner
    cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1)
    cfg.default_hooks.checkpoint.update(save_best='CIDEr', rule='greater')
    cfg.train_cfg.val_interval = 10  # no validation: the test scores
    cfg.experiment_name = f'best{id(tmp_path)}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook, = [h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)]
    return runner, hook


def test_a_kill_while_replacing_the_best_keeps_the_old_best(
        trained_runner, monkeypatch):
    from mmengine.runner import Runner

    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    runner, hook = trained_runner
    work = runner.work_dir
    hook._save_best_checkpoint(runner, {'CIDEr': 0.5})
    first = osp.join(work, 'best_CIDEr_epoch_1.pth')
    assert hook.best_ckpt_path == first
    before = open(first, 'rb').read()

    def killed_mid_save(self, out_dir, filename, *args, **kwargs):
        with open(osp.join(out_dir, filename), 'wb') as f:
            f.write(b'PK\x03\x04 cut short')  # a torch zip, cut short
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, 'save_checkpoint', killed_mid_save)
    runner.train_loop._epoch = 2  # a later, better validation
    with pytest.raises(KeyboardInterrupt):
        hook._save_best_checkpoint(runner, {'CIDEr': 0.9})
    assert open(first, 'rb').read() == before
    assert not osp.exists(osp.join(work, 'best_CIDEr_epoch_2.pth'))
    assert not [p for p in _glob(work) if '.tmp' in p]
    assert 'state_dict' in load_local_checkpoint(first)


def test_the_new_best_replaces_the_old_only_once_written(trained_runner):
    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    runner, hook = trained_runner
    work = runner.work_dir
    hook._save_best_checkpoint(runner, {'CIDEr': 0.5})
    runner.train_loop._epoch = 2
    hook._save_best_checkpoint(runner, {'CIDEr': 0.4})  # not better: kept
    assert osp.isfile(osp.join(work, 'best_CIDEr_epoch_1.pth'))
    runner.train_loop._epoch = 3
    hook._save_best_checkpoint(runner, {'CIDEr': 0.9})
    best = sorted(osp.basename(p) for p in _glob(work)
                  if osp.basename(p).startswith('best_'))
    assert best == ['best_CIDEr_epoch_3.pth']
    loaded = load_local_checkpoint(osp.join(work, best[0]))
    assert loaded['message_hub']['runtime_info']['best_score'] == 0.9
    # The file operations are mmengine's own again.
    assert 'save_checkpoint' not in vars(runner)
    assert 'remove' not in vars(hook.file_backend)


def _glob(folder):
    import glob
    return glob.glob(osp.join(folder, '*.pth*'))


def test_a_run_sweeps_its_work_dirs_stale_saves(toy_world, tmp_path):
    from mmengine.runner import Runner
    work = tmp_path / 'work'
    work.mkdir()
    stale = work / 'epoch_1.pth.tmp4194305'  # above Linux's pid_max
    stale.write_bytes(b'PK half a checkpoint')
    cfg = toy_config(toy_world, str(work), max_epochs=1)
    cfg.train_cfg.val_interval = 10
    cfg.default_hooks.checkpoint.update(save_best=None)
    cfg.experiment_name = f'sweep{id(tmp_path)}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert not stale.exists()
    assert 'Removed 1 checkpoint(s) a killed save left half-written: ' \
        'epoch_1.pth.tmp4194305' in open(runner.logger.log_file).read()
