"""The inferencer against its former path, kept here as the reference.

The inferencer once loaded its own open_clip, preprocessed each image with
open_clip's transform and ran the extraction code on the stacked batch.
:func:`_reference` is that path, written out (this test passed against
that inferencer before it changed); the inferencer, now the config's test
pipeline and the model's image encoder, must give the same features,
concepts and captions, bit for bit, for files, arrays and PIL images, from
the training config and from one-file releases with and without the CLIP
tower in them.
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from pcm_plugin.apis import ImageCaptioner, PCMCaptionInferencer
from pcm_plugin.apis.release import publish_model
from pcm_plugin.clip.clip_features import (
    extract_batch,
    load_open_clip,
    resolve_pool,
)
from pcm_plugin.clip.image_io import load_rgb_image
from pcm_plugin.models import OpenCLIPImageEncoder
from pcm_plugin.models.tokenizer import EOS_ID
from tests.helpers import write_images


def _reference(config: str, model, images: list) -> dict:
    """Features, concepts and captions the former inferencer gave for
    ``images`` in one batch: open_clip built from the config's
    ``clip_model``, its own evaluation transform on each image (files
    through :func:`load_rgb_image`, arrays through ``Image.fromarray``,
    PIL images through ``convert('RGB')``)."""
    clip_cfg = Config.fromfile(config).clip_model
    clip, preprocess, _ = load_open_clip(
        clip_cfg.name, checkpoint=clip_cfg.checkpoint,
        model_config=clip_cfg.model_config)
    pool = resolve_pool(tuple(clip.visual.grid_size),
                        clip_cfg.get('pool', 'auto'))
    rgb = [load_rgb_image(image) if isinstance(image, str) else
           Image.fromarray(image.astype(np.uint8))
           if isinstance(image, np.ndarray) else image.convert('RGB')
           for image in images]
    batch = torch.stack([preprocess(image) for image in rgb])  # (B, 3, S, S)
    patch, global_feat = extract_batch(clip, batch, pool=pool)
    feats = dict(patch_feats=patch, global_feat=global_feat)
    model.eval()
    details = model.mixup(patch, global_feat)
    words = model.mixup.concept_words
    return dict(feats=feats, captions=model.generate(feats), concepts=[
        [words[i] for i in row] for row in details['concept_idx'].tolist()])


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> list:
    """Two JPEG files, a grayscale PNG, an RGB array and an RGBA PIL image
    (its alpha dropped, as the former inferencer did)."""
    root = tmp_path_factory.mktemp('reference_images')
    paths = write_images(str(root), n=2)
    gray = str(root / 'gray.png')
    Image.fromarray(np.arange(64 * 80, dtype=np.uint8).reshape(64, 80)
                    ).save(gray)
    rng = np.random.default_rng(1)
    array = rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)
    rgba = Image.fromarray(rng.integers(0, 255, (40, 60, 4),
                                        dtype=np.uint8), mode='RGBA')
    return [*paths, gray, array, rgba]


@pytest.fixture(scope='module')
def talkative(checkpoint, tmp_path_factory) -> tuple:
    """``(checkpoint, model)``: the untrained toy model says nothing (EOS
    first), so its end token is ruled out and its projections scaled up
    until its captions differ between the images."""
    _, _, model = checkpoint
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.decoder.predictor[1].bias[EOS_ID] = -1e4
        model.decoder.predictor[1].weight.mul_(30)
        for name, param in model.named_parameters():
            if name.startswith(('mixup.patch_proj', 'mixup.global_proj')) \
                    or ('.attn.' in name and '_proj.' in name):
                param.mul_(3)
    path = str(tmp_path_factory.mktemp('talkative') / 'talkative.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path, model


@pytest.fixture(scope='module')
def releases(checkpoint, talkative, tmp_path_factory) -> dict:
    """One-file releases of the talkative checkpoint, with and without the
    CLIP tower."""
    config = checkpoint[0]
    root = tmp_path_factory.mktemp('reference_releases')
    out = dict(with_clip=str(root / 'with_clip.safetensors'),
               bare=str(root / 'bare.safetensors'))
    publish_model(config, talkative[0], out['with_clip'], with_clip=True)
    publish_model(config, talkative[0], out['bare'])
    return out


@pytest.mark.parametrize('source', ['config', 'with_clip', 'bare'])
def test_features_concepts_and_captions_equal_the_former_path(
        checkpoint, talkative, images, releases, source):
    config = checkpoint[0]
    ckpt, model = talkative
    expected = _reference(config, model, images)
    assert len(set(expected['captions'])) > 1  # they depend on the image
    args = (config, ckpt) if source == 'config' else (releases[source], )
    inferencer = PCMCaptionInferencer(*args)
    # One path: the config's test pipeline reading images, the model's
    # own image encoder (kept out of its state dict).
    assert [type(t).__name__ for t in inferencer.pipeline.transforms] == \
        ['LoadCLIPImage', 'PackCaptionInputs']
    assert isinstance(inferencer.model.image_encoder, OpenCLIPImageEncoder)
    assert set(inferencer.model.state_dict()) == set(model.state_dict())
    results = inferencer(images, return_concepts=True)
    assert [r['pred_caption'] for r in results] == expected['captions']
    assert [r['concepts'] for r in results] == expected['concepts']
    assert [r['input_index'] for r in results] == list(range(len(images)))
    feats = ImageCaptioner(*args).features(images)
    for key, value in expected['feats'].items():
        assert torch.equal(feats[key], value), key
