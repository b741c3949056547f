"""The dense patch-concept objective of the localized mini CLIP."""
import math

import numpy as np
import pytest
import torch

from projects.mini_world.pcm_mini_world.mini_clip_dense import (
    IGNORE,
    WORDS,
    dense_concept_loss,
    patch_targets,
)
from projects.mini_world.pcm_mini_world.scenes import Scene, SceneObject


def test_patch_targets_from_exact_masks():
    scene = Scene(background='sky', objects=[SceneObject(
        shape='star', colour='red', size='large', cell=(0, 0), x=12.0,
        y=12.0, radius=9.0)])
    targets = patch_targets([scene], grid=8)  # (1, 64, 3)
    assert targets.shape == (1, 64, 3)
    star, red, sky = (WORDS.index(w) for w in ('star', 'red', 'sky'))
    # Patch (1, 1) = 9 holds the star's centre: shape and colour targets.
    assert targets[0, 9].tolist() == [star, red, IGNORE]
    # The far corner patch 63 is background only.
    assert targets[0, 63].tolist() == [IGNORE, IGNORE, sky]
    # Every patch is object, background or an ignored edge, never two.
    kinds = (targets[0] != IGNORE)  # (64, 3)
    assert not (kinds[:, :2].any(1) & kinds[:, 2]).any()
    assert (kinds[:, 0] == kinds[:, 1]).all()
    assert 0 < (~kinds.any(1)).sum() < 10  # a ring of edge patches


def test_dense_loss_exact_value_on_orthonormal_words():
    """Words are the axes of R^C: a patch equal to its target word has
    cosine 1 with it and 0 with every other word of its group."""
    C = len(WORDS)
    words = torch.eye(C, dtype=torch.float64)  # (C, Dg = C)
    star, red, sky = (WORDS.index(w) for w in ('star', 'red', 'sky'))
    patches = torch.zeros(1, 2, C, dtype=torch.float64)
    patches[0, 0, star] = 2.0  # object patch pointing at "star" (norm 2)
    patches[0, 1, sky] = 1.0  # background patch pointing at "sky"
    targets = torch.tensor([[[star, red, IGNORE], [IGNORE, IGNORE, sky]]])
    loss = dense_concept_loss(patches, words, targets, scale=10.0)
    shape_term = -math.log(math.exp(10) / (math.exp(10) + 11))  # 7+5 words
    colour_term = math.log(11)  # all 6+5 logits are 0
    background_term = -math.log(math.exp(10) / (math.exp(10) + 17))
    expected = (shape_term + colour_term + background_term) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-9)


def test_dense_loss_with_no_object_patch_has_zero_object_terms():
    C = len(WORDS)
    sky = WORDS.index('sky')
    patches = torch.zeros(1, 1, C, dtype=torch.float64)
    patches[0, 0, sky] = 1.0
    targets = torch.tensor([[[IGNORE, IGNORE, sky]]])
    loss = dense_concept_loss(patches.requires_grad_(),
                              torch.eye(C, dtype=torch.float64),
                              targets, scale=10.0)
    expected = -math.log(math.exp(10) / (math.exp(10) + 17)) / 3
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-9)
    loss.backward()  # still differentiable
    assert np.isfinite(patches.grad.numpy()).all()


def test_dense_clip_training_is_deterministic(tmp_path):
    from projects.mini_world.pcm_mini_world import mini_clip_train as train
    kw = dict(steps=2, pretrain_steps=1, batch_size=4, eval_scenes=6,
              resume_every=0, progress=False, dense_weight=1.0,
              image_concept_weight=0.5, seed=3)
    a = train.train_mini_clip(str(tmp_path / 'a'), **kw)
    b = train.train_mini_clip(str(tmp_path / 'b'), **kw)
    assert len(a['dense_loss']) == 1 and a['dense_loss'] == b['dense_loss']
    assert a['clip_loss'] == b['clip_loss']
    sa = torch.load(tmp_path / 'a' / 'pcm-mini-clip.pt')
    sb = torch.load(tmp_path / 'b' / 'pcm-mini-clip.pt')
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)
    assert 'localisation' in a['eval']['real']
