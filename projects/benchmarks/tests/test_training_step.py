"""The training step's breakdown and the fused Adam the COCO schedule uses
(no timing asserted)."""
import os.path as osp

import torch

from projects.benchmarks.pcm_benchmarks.training_step import step_breakdown
from tests.helpers import REPO_ROOT


def test_breakdown_names_the_parts_of_a_step():
    torch.manual_seed(0)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    only_matmul = step_breakdown(lambda: a @ b, reps=3)
    assert only_matmul['matmul'] > 0.5
    assert only_matmul['dropout_masks'] == only_matmul['optimizer'] == 0
    weight = torch.nn.Parameter(torch.randn(64, 64))
    optimizer = torch.optim.Adam([weight], lr=0.1, fused=True)

    def step():
        optimizer.zero_grad()
        x = torch.nn.functional.dropout(torch.randn(8, 64), 0.5)
        (x @ weight).square().sum().backward()
        optimizer.step()
    parts = step_breakdown(step)
    assert parts['dropout_masks'] > 0 and parts['optimizer'] > 0
    assert abs(sum(parts[k] for k in ('matmul', 'dropout_masks',
                                      'optimizer', 'other')) - 1) < 1e-9


def test_coco_schedule_fused_adam_takes_the_for_loop_adam_steps():
    """The schedule's ``fused=True`` is the same update as PyTorch's
    default Adam (within float32 rounding), through mmengine's builder
    with the config's clipping."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_',
                                   'schedules', 'pcm_noam_12e.py'))
    assert cfg.optim_wrapper.optimizer.fused is True
    weights = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32),
                                    torch.nn.Linear(32, 4))
        wrapper_cfg = cfg.optim_wrapper.to_dict()
        wrapper_cfg['optimizer'] = dict(wrapper_cfg['optimizer'],
                                        fused=fused)
        wrapper = build_optim_wrapper(model, wrapper_cfg)
        start = torch.cat([p.detach().flatten() for p in model.parameters()])
        for step in range(5):
            x = torch.randn(8, 16, generator=torch.Generator().manual_seed(
                step))
            wrapper.update_params(model(x).square().mean())
        weights.append(torch.cat([p.detach().flatten()
                                  for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], atol=1e-6, rtol=1e-5)
    assert (weights[0] - start).abs().max() > 1e-3  # the steps moved it
