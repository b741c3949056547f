"""The mini CLIP is a plain open_clip model that round-trips through files."""
import json
import os.path as osp

import numpy as np
import pytest

from pcm_plugin.mini_world.render import render_real
from pcm_plugin.mini_world.scenes import (COLOURS, Scene, SceneObject,
                                          generate_split)


@pytest.fixture(scope='module')
def random_mini_clip():
    import open_clip
    import torch
    from pcm_plugin.mini_world.mini_clip import (MINI_CLIP_CONFIG,
                                                 register_config)
    import tempfile
    folder = tempfile.mkdtemp()
    path = osp.join(folder, 'pcm-mini-clip-test.json')
    with open(path, 'w') as f:
        json.dump(MINI_CLIP_CONFIG, f)
    name = register_config(path)
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    return model, name, folder


def test_round_trip_through_open_clip_loading(random_mini_clip):
    import open_clip
    import torch
    from pcm_plugin.mini_world.mini_clip import (images_to_tensor,
                                                 round_to_fp16_,
                                                 save_mini_clip)
    model, name, folder = random_mini_clip
    round_to_fp16_(model)
    cfg, ckpt = save_mini_clip(model, osp.join(folder, 'out'), name=name,
                               config=json.load(open(osp.join(
                                   folder, f'{name}.json'))))
    assert osp.getsize(ckpt) < 10 * 2 ** 20  # fp16, small enough to commit
    open_clip.add_model_config(cfg)
    loaded = open_clip.create_model(name, pretrained=ckpt).eval()
    scenes, captions = generate_split('val', 4, seed=0)
    images = images_to_tensor([render_real(s) for s in scenes])
    tokens = open_clip.get_tokenizer(name)([c[0] for c in captions])
    with torch.no_grad():
        for fn, x in ((lambda m, x: m.encode_image(x), images),
                      (lambda m, x: m.encode_text(x), tokens)):
            torch.testing.assert_close(fn(loaded, x), fn(model, x),
                                       rtol=0, atol=0)
    # The frozen PCM head reads the same checkpoint.
    from pcm_plugin.models.clip_head import load_clip_head_state
    head = load_clip_head_state(ckpt)
    torch.testing.assert_close(head['proj'], model.visual.proj.detach(),
                               rtol=0, atol=0)


def test_tensor_conversion_equals_open_clip_preprocess(random_mini_clip):
    import open_clip
    import torch
    from PIL import Image
    from pcm_plugin.mini_world.mini_clip import images_to_tensor
    _, name, _ = random_mini_clip
    _, _, preprocess = open_clip.create_model_and_transforms(name)
    image = render_real(generate_split('test', 1, seed=0)[0][0])
    torch.testing.assert_close(images_to_tensor([image])[0],
                               preprocess(Image.fromarray(image)),
                               rtol=0, atol=1e-6)


def test_training_batches_are_hard_negative_groups():
    from pcm_plugin.mini_world.mini_clip import (GROUP_VARIANTS,
                                                 training_batch)
    images, texts = training_batch(0, 8, seed=0)
    again = training_batch(0, 8, seed=0)
    assert len(images) == len(texts) == 8
    assert texts == again[1]
    np.testing.assert_array_equal(images[3], again[0][3])
    assert len(GROUP_VARIANTS) == 4  # two groups of four above


def test_committed_mini_clip_knows_colours_and_backgrounds():
    """The shipped checkpoint loads and recognises world concepts."""
    from pcm_plugin.mini_world.mini_clip import (committed_paths,
                                                 concept_embeddings,
                                                 encode_images,
                                                 load_mini_clip)
    cfg, ckpt = committed_paths()
    assert osp.isfile(cfg) and osp.isfile(ckpt)
    model, _, tokenizer, _ = load_mini_clip()
    colours = list(COLOURS)
    scenes = [Scene(background='snow', objects=[SceneObject(
        shape='square', colour=c, size='large', cell=(1, 1), x=32.0,
        y=32.0, radius=11.0)]) for c in colours]
    image_emb = encode_images(model, [render_real(s) for s in scenes])
    sims = image_emb @ concept_embeddings(model, tokenizer, colours).T
    assert [colours[i] for i in sims.argmax(1)] == colours
