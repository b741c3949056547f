"""The mini CLIP is a plain open_clip model that round-trips through files."""
import json
import os.path as osp

import numpy as np
import pytest

from projects.mini_world.pcm_mini_world.render import render_real
from projects.mini_world.pcm_mini_world.scenes import (
    COLOURS,
    Scene,
    SceneObject,
    generate_split,
)


@pytest.fixture(scope='module')
def random_mini_clip():
    import tempfile

    import open_clip
    import torch

    from pcm_plugin.clip.clip_features import register_model_config
    from projects.mini_world.pcm_mini_world.mini_clip import MINI_CLIP_CONFIG
    folder = tempfile.mkdtemp()
    path = osp.join(folder, 'pcm-mini-clip-test.json')
    with open(path, 'w') as f:
        json.dump(MINI_CLIP_CONFIG, f)
    name = register_model_config(path)
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    return model, name, folder


def test_round_trip_through_open_clip_loading(random_mini_clip):
    import open_clip
    import torch

    from projects.mini_world.pcm_mini_world.mini_clip import (
        images_to_tensor,
        round_to_fp16_,
        save_mini_clip,
    )
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

    from projects.mini_world.pcm_mini_world.mini_clip import images_to_tensor
    _, name, _ = random_mini_clip
    _, _, preprocess = open_clip.create_model_and_transforms(name)
    image = render_real(generate_split('test', 1, seed=0)[0][0])
    torch.testing.assert_close(images_to_tensor([image])[0],
                               preprocess(Image.fromarray(image)),
                               rtol=0, atol=1e-6)


def test_training_batches_are_hard_negative_groups():
    from projects.mini_world.pcm_mini_world.mini_clip_train import (
        GROUP_VARIANTS,
        training_batch,
    )
    images, texts, scenes = training_batch(0, 8, seed=0)
    again = training_batch(0, 8, seed=0)
    assert len(images) == len(texts) == len(scenes) == 8
    assert len(GROUP_VARIANTS) == 4
    assert texts == again[1]
    np.testing.assert_array_equal(images[3], again[0][3])
    # Within a group the layout (where the non-background pixels are) is
    # shared; the drawn shapes and colours differ.
    fg = [np.abs(im.astype(int) - im[0, 0]).sum(-1) > 60 for im in images]
    for k in (1, 2, 3):
        overlap = (fg[0] & fg[k]).sum() / max(fg[0].sum(), 1)
        assert overlap > 0.4
    assert not np.array_equal(images[0], images[1])


def test_committed_mini_clip_knows_shapes_colours_backgrounds():
    """The shipped checkpoint loads and retrieves the true concept words."""
    from projects.mini_world.pcm_mini_world.mini_clip import (
        committed_paths,
        concept_embeddings,
        encode_images,
        load_mini_clip,
    )
    from projects.mini_world.pcm_mini_world.scenes import BACKGROUNDS, SHAPES
    cfg, ckpt = committed_paths()
    assert osp.isfile(cfg) and osp.isfile(ckpt)
    model, _, tokenizer, _ = load_mini_clip()

    def scene(shape='square', colour='red', background='snow'):
        return Scene(background=background, objects=[SceneObject(
            shape=shape, colour=colour, size='large', cell=(1, 1), x=32.0,
            y=32.0, radius=11.0)])

    for words, scenes in (
            (list(SHAPES), [scene(shape=w) for w in SHAPES]),
            (list(COLOURS), [scene(colour=w) for w in COLOURS]),
            (list(BACKGROUNDS), [scene(background=w) for w in BACKGROUNDS])):
        image_emb = encode_images(model, [render_real(s) for s in scenes])
        sims = image_emb @ concept_embeddings(model, tokenizer, words).T
        assert [words[i] for i in sims.argmax(1)] == words


def test_killed_training_resumes_to_the_same_model(tmp_path, monkeypatch):
    import torch

    from projects.mini_world.pcm_mini_world import mini_clip_train as train
    kw = dict(steps=3, pretrain_steps=2, batch_size=4, eval_scenes=6,
              resume_every=1, progress=False)
    full = train.train_mini_clip(str(tmp_path / 'full'), **kw)
    assert full['resumed_from'] is None
    real_batch, failed = train.training_batch, []

    def killed_once(step, *args, **kwargs):
        if step == 2 and not failed:
            failed.append(step)
            raise KeyboardInterrupt
        return real_batch(step, *args, **kwargs)

    monkeypatch.setattr(train, 'training_batch', killed_once)
    with pytest.raises(KeyboardInterrupt):
        train.train_mini_clip(str(tmp_path / 'cut'), **kw)
    assert osp.isfile(tmp_path / 'cut' / 'resume.pt')
    resumed = train.train_mini_clip(str(tmp_path / 'cut'), **kw)
    assert resumed['resumed_from'] == 'clip step 2'
    assert not osp.isfile(tmp_path / 'cut' / 'resume.pt')
    assert resumed['clip_loss'] == full['clip_loss']
    a = torch.load(tmp_path / 'full' / 'pcm-mini-clip.pt')
    b = torch.load(tmp_path / 'cut' / 'pcm-mini-clip.pt')
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
