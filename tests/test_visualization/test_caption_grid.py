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


def test_bad_input_wrong_image_dir_warns_and_the_run_goes_on(toy_world,
                                                             tmp_path):
    """Before: a wrong image_dir killed training at the first validation.
    Now one warning at the start, no picture, and the run ends normally."""
    from mmengine.runner import Runner
    cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1)
    cfg.train_cfg.val_interval = 1
    cfg.default_hooks.checkpoint.update(save_best=None)
    cfg.custom_hooks = [dict(type='CaptionGridHook',
                             image_dir=str(tmp_path / 'nope'))]
    cfg.experiment_name = f'grid{id(tmp_path)}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    log = open(runner.logger.log_file).read()
    assert f'image_dir {tmp_path / "nope"} is not a folder' in log
    assert 'Epoch(val) [1]' in log
    assert not list((tmp_path / 'work').rglob('*.png'))


def test_a_failing_picture_is_a_warning(toy_world, tmp_path):
    """An image named by the annotations but unreadable: warning, no
    exception out of the hook."""
    from types import SimpleNamespace

    from pcm_plugin.visualization.caption_grid import CaptionGridHook
    hook = CaptionGridHook(image_dir=str(tmp_path))
    warnings = []
    runner = SimpleNamespace(
        logger=SimpleNamespace(warning=warnings.append),
        val_dataloader=SimpleNamespace(dataset=SimpleNamespace(
            ann_file=str(tmp_path / 'missing.json'))))
    hook._seen = [('1', 'a red circle')]
    hook.after_val_epoch(runner)
    assert len(warnings) == 1 and 'no val picture (FileNotFoundError' in \
        warnings[0] and 'missing.json' in warnings[0]


def test_caption_font_keeps_word_gaps():
    """The bitmap default font drew "a photo of a" as "a photoofa"."""
    from PIL import ImageFont

    from pcm_plugin.visualization.caption_grid import caption_font
    font = caption_font()
    assert isinstance(font, ImageFont.FreeTypeFont) and font.size == 13
    assert font.getlength(' ') >= 3
