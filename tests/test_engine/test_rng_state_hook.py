"""Resume is exact: dropout and CapDec noise continue where they stopped."""
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

    whole = _train(config('whole', 2))
    _train(config('cut', 1))
    cfg = config('cut', 2)
    cfg.resume = True
    resumed = _train(cfg)
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


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
