"""Tests of the NoamLR parameter scheduler."""
import pytest
import torch

from pcm_plugin.engine.noam_lr import NoamLR, noam_lr


def make_optimizer(lr=5e-4):
    """Two param groups with the official BASE_LR, which Noam ignores."""
    params = [torch.nn.Parameter(torch.zeros(2)),
              torch.nn.Parameter(torch.zeros(3))]
    return torch.optim.Adam([{'params': [params[0]]},
                             {'params': [params[1]]}], lr=lr)


def lrs_for(scheduler, optimizer, num_steps):
    """The lr used by each of ``num_steps`` iterations."""
    lrs = []
    for _ in range(num_steps):
        lrs.append([group['lr'] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_formula_values():
    d, w = 512, 10000
    assert noam_lr(1) == pytest.approx(d**-0.5 * w**-1.5, rel=1e-15)
    assert noam_lr(w) == pytest.approx(d**-0.5 * w**-0.5, rel=1e-15)
    assert noam_lr(4 * w) == pytest.approx(d**-0.5 * (4 * w)**-0.5,
                                           rel=1e-15)
    assert noam_lr(4 * w) == pytest.approx(noam_lr(w) / 2, rel=1e-15)
    # The documented peak (docs/method.md §6.1) and end-of-training values.
    assert noam_lr(w) == pytest.approx(4.42e-4, abs=5e-7)
    assert max(noam_lr(s) for s in range(1, 3 * w)) == noam_lr(w)
    assert noam_lr(203400) == pytest.approx(9.8e-5, abs=1e-6)
    assert noam_lr(2, factor=3.0, model_dim=64, warmup=4) == pytest.approx(
        3.0 / 8 * 2 * 4**-1.5, rel=1e-15)
    with pytest.raises(ValueError, match='1-based'):
        noam_lr(0)


def test_scheduler_sets_lr_per_iteration():
    optimizer = make_optimizer()
    scheduler = NoamLR(optimizer, warmup=4)
    lrs = lrs_for(scheduler, optimizer, 10)
    for it, group_lrs in enumerate(lrs):
        expected = noam_lr(it + 1, warmup=4)  # s = iteration + 1
        assert group_lrs == [pytest.approx(expected, rel=1e-15)] * 2
    assert scheduler.get_last_value()[0] == pytest.approx(
        noam_lr(11, warmup=4), rel=1e-15)


def test_build_from_registry_and_begin():
    from pcm_plugin.registry import PARAM_SCHEDULERS
    optimizer = make_optimizer()
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='NoamLR', model_dim=256, warmup=3, factor=2.0, begin=2),
        default_args=dict(optimizer=optimizer, epoch_length=7))
    assert isinstance(scheduler, NoamLR)
    assert not scheduler.by_epoch
    lrs = [group_lrs[0] for group_lrs in lrs_for(scheduler, optimizer, 5)]
    expected = [noam_lr(s, model_dim=256, warmup=3, factor=2.0)
                for s in (1, 2, 3)]
    # Untouched base lr before ``begin``, then s counts from 1.
    assert lrs == [5e-4, 5e-4] + [pytest.approx(v, rel=1e-15)
                                  for v in expected]


def test_warns_when_end_is_inside_warmup():
    with pytest.warns(UserWarning, match='add by_epoch=False'):
        NoamLR(make_optimizer(), warmup=4, end=2)


def test_state_dict_round_trip():
    optimizer = make_optimizer()
    scheduler = NoamLR(optimizer, warmup=5)
    lrs_for(scheduler, optimizer, 3)
    state = scheduler.state_dict()
    assert 'optimizer' not in state
    assert state['last_step'] == 3 and state['warmup'] == 5

    # The Runner's order: build, then load the optimizer and scheduler state.
    resumed_opt = make_optimizer()
    resumed = NoamLR(resumed_opt, warmup=999)  # overwritten by the state
    resumed_opt.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(state)
    assert lrs_for(resumed, resumed_opt, 4) == lrs_for(
        scheduler, optimizer, 4)


def test_runner_resume(tmp_path):
    """Resuming at iteration 3 of 6 continues the schedule, not restarts."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    from pcm_plugin.engine.checkpoint import register_checkpoint_loader
    register_checkpoint_loader()  # torch >= 2.6 + mmengine 0.10.7 resume

    class ToyModel(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            inputs = torch.stack(inputs)  # (B, 2)
            return {'loss': self.linear(inputs).pow(2).mean()}

    class RecordLR(Hook):

        def __init__(self):
            self.lrs = {}

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.lrs[runner.iter] = runner.optim_wrapper.get_lr()['lr'][0]

    def run(work_dir, resume_from=None):
        recorder = RecordLR()
        runner = Runner(
            model=ToyModel(),
            work_dir=str(work_dir),
            experiment_name=f'noam_{work_dir.name}',
            train_dataloader=dict(
                dataset=[dict(inputs=torch.ones(2))] * 8,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='pseudo_collate'),
                batch_size=2,
                num_workers=0),
            optim_wrapper=dict(optimizer=dict(type='Adam', lr=5e-4)),
            # by_epoch=False must be explicit: the Runner fills a missing
            # `end` with max_epochs otherwise (see the NoamLR docstring).
            param_scheduler=dict(type='NoamLR', warmup=4, by_epoch=False),
            train_cfg=dict(by_epoch=False, max_iters=6),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=3, by_epoch=False),
                logger=dict(type='LoggerHook', interval=100)),
            custom_hooks=[recorder],
            resume=resume_from is not None,
            load_from=resume_from,
            default_scope='mmpretrain')
        runner.train()
        assert isinstance(runner.param_schedulers[0], NoamLR)
        return recorder.lrs

    full = run(tmp_path / 'full')
    resumed = run(tmp_path / 'resumed', str(tmp_path / 'full' / 'iter_3.pth'))
    assert full == {it: pytest.approx(noam_lr(it + 1, warmup=4), rel=1e-15)
                    for it in range(6)}
    assert resumed == {it: full[it] for it in (3, 4, 5)}
