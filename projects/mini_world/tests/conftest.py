"""Fixtures of the mini-world tests."""
import json
import os.path as osp

import pytest

from projects.mini_world.pcm_mini_world.prepare import prepare_world
from projects.mini_world.pcm_mini_world.world import WorldSettings


@pytest.fixture(scope='session')
def tiny_world(tmp_path_factory):
    """A prepared world of 24 training captions with a random mini CLIP."""
    import open_clip
    import torch

    from projects.mini_world.pcm_mini_world.mini_clip import (
        MINI_CLIP_CONFIG,
        MINI_CLIP_NAME,
        save_mini_clip,
    )
    clip_dir = str(tmp_path_factory.mktemp('clip'))
    path = osp.join(clip_dir, f'{MINI_CLIP_NAME}.json')
    with open(path, 'w') as f:
        json.dump(MINI_CLIP_CONFIG, f)
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    model = open_clip.create_model(MINI_CLIP_NAME)
    cfg, ckpt = save_mini_clip(model, clip_dir)
    settings = WorldSettings(
        root=str(tmp_path_factory.mktemp('world')), num_train=24, num_val=3,
        num_test=4, defect_rates=[0.0, 0.5], clip_config=cfg,
        clip_checkpoint=ckpt, batch_size=16)
    logs = []
    world = prepare_world(settings, progress=False, log=logs.append)
    return settings, world, logs
