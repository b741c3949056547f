"""Where PCM's selection lands: coverage, pair scoring, the selection."""
import numpy as np
import pytest
import torch

from pcm_plugin.models.mixup_selection import select_pairs
from projects.mini_world.pcm_mini_world.localisation import (
    localisation_stats,
    object_coverage,
)
from projects.mini_world.pcm_mini_world.scenes import Scene, SceneObject


def _two_object_scene():
    return Scene(background='snow', objects=[
        SceneObject(shape='square', colour='red', size='large', cell=(0, 0),
                    x=12.0, y=12.0, radius=8.0),
        SceneObject(shape='circle', colour='blue', size='large', cell=(2, 2),
                    x=48.0, y=52.0, radius=6.0)])


def test_object_coverage_per_patch():
    from projects.mini_world.pcm_mini_world.render import (
        scene_sprites,
        sprite_alpha,
    )
    scene = _two_object_scene()
    cover = object_coverage(scene, grid=8)  # (2, 64); 8x8-pixel patches
    assert cover.shape == (2, 64)
    # The square is centred at pixel (row 12, col 12): patch (1, 1) = 9.
    assert cover[0, 9] == pytest.approx(1.0)
    assert cover[0, 63] == 0 and cover[1, 0] == 0
    # The circle at (row 52, col 48) lies in patch row 6, column 6 = 54.
    assert cover[1].argmax() == 54
    # Coverage conserves each sprite's area.
    for k, sprite in enumerate(scene_sprites(scene)):
        assert cover[k].sum() * 64 == pytest.approx(
            sprite_alpha(sprite).sum(), rel=1e-5)



def test_localisation_stats_on_a_known_scene():
    """Hand-placed pairs: the square's patch 9, the circle's patch 54 and
    the empty corner patch 7, scored against the exact masks."""
    words = ['square', 'circle', 'red', 'blue', 'snow']
    scene = _two_object_scene()
    # One image, K = 5 retrieved concepts in bank order.
    concept_idx = torch.tensor([[0, 1, 2, 3, 4]])
    K = 5

    def pair(patch, slot):
        return patch * K + slot

    pairs = [pair(9, 0),   # square on the square: shape match
             pair(54, 0),  # square on the circle: on an object, no match
             pair(9, 2),   # red on the (red) square: colour match
             pair(7, 3),   # blue on an empty patch: off every object
             pair(7, 4),   # snow off every object: background match
             pair(9, 4),   # snow on the square: background miss
             pair(54, 1)]  # dropped pair: not counted
    pair_idx = torch.tensor([pairs])
    pair_ok = torch.tensor([[True] * 6 + [False]])
    stats = localisation_stats([scene], words, concept_idx, pair_idx,
                               pair_ok, num_patches=64)
    assert stats['shape'] == dict(n=2, share=2 / 6, on_object=1.0,
                                  on_match=0.5)
    assert stats['colour'] == dict(n=2, share=2 / 6, on_object=0.5,
                                   on_match=0.5)
    assert stats['background'] == dict(n=2, share=2 / 6, on_object=0.5,
                                       on_match=0.5)
    assert stats['object_match'] == 2 / 4
    # 4 of the 64 patches are >= 25 % covered by an object.
    cover = object_coverage(scene, 8)
    assert stats['object_patches'] == (cover >= 0.25).any(0).mean()


def test_select_pairs_follows_the_affinity():
    """Patch 2 is the concept-1 direction, patch 0 the concept-0 one: the
    top pairs are exactly those, in affinity order."""
    bank = torch.eye(3)  # (C, Dg) = 3 orthogonal concepts
    patches = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0],
                             [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]])
    glob = torch.tensor([[0.6, 0.8, 0.0]])  # retrieves concept 1 then 0
    concept_idx, pair_idx, pair_ok = select_pairs(
        patches, glob, bank, top_k=2, top_m=2, temperature=0.01)
    assert concept_idx.tolist() == [[1, 0]]
    # (patch 2, slot 0 = concept 1) and (patch 0, slot 1 = concept 0).
    assert sorted(pair_idx[0].tolist()) == [0 * 2 + 1, 2 * 2 + 0]
    assert pair_ok.all()
    np.testing.assert_array_equal(pair_ok.shape, (1, 2))
