"""Images in, captions out: the model runs the frozen CLIP tower itself
(model.image_encoder) and gives the feature path's captions."""
import json

import torch
from mmengine.config import Config
from PIL import Image

from tests.helpers import write_images


def _image_encoder(cfg):
    clip = cfg.clip_model
    return dict(type='OpenCLIPImageEncoder', name=clip.name,
                checkpoint=clip.checkpoint, model_config=clip.model_config)


def test_preprocessing_from_the_config_equals_open_clips(checkpoint,
                                                         tmp_path):
    from pcm_plugin.clip.clip_features import (
        clip_preprocess,
        load_open_clip,
    )
    cfg = Config.fromfile(checkpoint[0])
    _, reference, _ = load_open_clip(
        cfg.clip_model.name, checkpoint=cfg.clip_model.checkpoint,
        model_config=cfg.clip_model.model_config)
    ours = clip_preprocess(cfg.clip_model.name, cfg.clip_model.model_config)
    image = Image.open(write_images(str(tmp_path), n=1)[0])
    assert torch.equal(ours(image), reference(image))


def test_runner_test_on_image_files_equals_the_feature_path(checkpoint,
                                                            tmp_path):
    from mmengine.runner import Runner

    from pcm_plugin.apis import PCMCaptionInferencer
    config, ckpt, _ = checkpoint
    paths = write_images(str(tmp_path), n=3)
    ann = tmp_path / 'images.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=str(i + 1), file_name=f'{i + 1}.jpg')
        for i in range(3)])))
    cfg = Config.fromfile(config)
    cfg.model.image_encoder = _image_encoder(cfg)
    cfg.test_dataloader.dataset = dict(
        type='CaptionImageDataset', ann_file=str(ann),
        image_dir=str(tmp_path), pipeline=[
            dict(type='LoadCLIPImage', clip_model=cfg.clip_model.name,
                 model_config=cfg.clip_model.model_config),
            dict(type='PackCaptionInputs')])
    out = tmp_path / 'captions.json'
    cfg.test_evaluator = [dict(type='DumpCaptions', out_file=str(out))]
    cfg.load_from = ckpt
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.test()
    got = {r['image_id']: r['caption'] for r in json.loads(out.read_text())}
    expected = PCMCaptionInferencer(config, ckpt)(paths)
    assert [got[i + 1] for i in range(3)] == [
        r['pred_caption'] for r in expected]
    # The tower stays out of the state dict: feature checkpoints load.
    assert not any(k.startswith('image_encoder')
                   for k in runner.model.state_dict())
