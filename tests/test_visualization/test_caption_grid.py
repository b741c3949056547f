"""CaptionGridHook: a picture of a test run, found through file_name."""
import json

import numpy as np
import torch
from PIL import Image

from pcm_plugin.testing.toy_features import toy_config


def test_test_run_writes_a_grid_of_its_images(toy_world, tmp_path):
    from mmengine.runner import Runner

    from pcm_plugin.registry import MODELS
    with open(toy_world['test_ann']) as f:
        ann = json.load(f)
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for entry in ann['data_list']:
        entry['file_name'] = f'{entry["image_id"]}.png'
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
                        ).save(images / entry['file_name'])
    ann_file = tmp_path / 'test.json'
    ann_file.write_text(json.dumps(ann))
    cfg = toy_config(toy_world, str(tmp_path / 'work'))
    cfg.test_dataloader.dataset.ann_file = str(ann_file)
    cfg.custom_hooks = [dict(type='CaptionGridHook', image_dir=str(images),
                             num=6)]
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)
    cfg.load_from = str(ckpt)
    runner = Runner.from_cfg(cfg)
    runner.test()
    grid = Image.open(f'{runner.log_dir}/test_captions.png')
    # 6 tiles of 360 px, 4 per row: two rows.
    assert grid.size[0] == 4 * 360 and grid.size[1] > 2 * 60
