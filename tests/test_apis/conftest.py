"""Fixtures of the API tests: a toy captioner checkpoint and images."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import dump_captioning_config


@pytest.fixture(scope='package')
def checkpoint(toy_world, tmp_path_factory):
    """A toy PCM-Net config + an (untrained) checkpoint of it."""
    from mmengine.config import Config

    from pcm_plugin.registry import MODELS
    root = tmp_path_factory.mktemp('infer')
    config = dump_captioning_config(toy_world, root)
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    ckpt = str(root / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    return config, ckpt, model


def write_images(root, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = osp.join(root, f'{i + 1}.jpg')
        Image.fromarray(rng.integers(0, 255, (90 + 10 * i, 120, 3),
                                     dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


