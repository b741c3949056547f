"""Fixtures of the API tests: a toy captioner checkpoint
(``tests.helpers.write_images`` writes the images)."""
import pytest
import torch

from tests.helpers import dump_captioning_config


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
