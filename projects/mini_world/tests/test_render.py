"""The real and synthetic renderers draw what the scene (caption) says."""
import numpy as np
import pytest

from projects.mini_world.pcm_mini_world.render import (
    SHAPE_POLYGONS,
    render_real,
    render_synthetic,
    scene_sprites,
    sprite_alpha,
)
from projects.mini_world.pcm_mini_world.scenes import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    generate_split,
)


def _scene(shape, colour='red', background='snow', x=32.0, y=32.0,
           radius=9.0):
    return Scene(background=background, objects=[SceneObject(
        shape=shape, colour=colour, size='medium', cell=(1, 1), x=x, y=y,
        radius=radius)])


@pytest.mark.parametrize('shape', SHAPES)
def test_object_centre_has_its_colour_and_corners_the_background(shape):
    image = render_real(_scene(shape, colour='purple', background='sand'))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert tuple(image[32, 32]) == COLOURS['purple']
    for corner in (image[0, 0], image[0, 63], image[63, 0], image[63, 63]):
        assert tuple(corner) == BACKGROUNDS['sand']


def test_every_object_of_random_scenes_is_drawn_in_its_colour():
    scenes, _ = generate_split('test', 50, seed=0, refs=1)
    for scene in scenes:
        image = render_real(scene)
        for obj in scene.objects:
            pixel = image[int(round(obj.y)), int(round(obj.x))].astype(int)
            # The centre pixel is (almost) fully covered: anti-aliasing
            # only touches edge pixels.
            assert np.abs(pixel - COLOURS[obj.colour]).max() <= 2, obj


def test_shapes_differ_and_sizes_scale_the_area():
    masks = {s: sprite_alpha(scene_sprites(_scene(s))[0]) for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert np.abs(masks[a] - masks[b]).sum() > 20, (a, b)
    small = sprite_alpha(scene_sprites(_scene('circle', radius=6))[0]).sum()
    large = sprite_alpha(scene_sprites(_scene('circle', radius=12))[0]).sum()
    assert large / small == pytest.approx(4.0, rel=0.08)
    assert small == pytest.approx(np.pi * 36, rel=0.05)


def test_unit_outlines_contain_their_centre():
    from matplotlib.path import Path
    for shape, outline in SHAPE_POLYGONS.items():
        assert Path(outline).contains_point((0.0, 0.0)), shape
        assert np.abs(outline).max() <= 1.0 + 1e-9, shape


def test_synthetic_is_seeded_and_shifted_but_keeps_the_layout():
    scene = _scene('star', colour='blue', background='grass')
    a = render_synthetic(scene, rng=np.random.default_rng(7))
    b = render_synthetic(scene, rng=np.random.default_rng(7))
    c = render_synthetic(scene, rng=np.random.default_rng(8))
    real = render_real(scene)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 2
    assert np.abs(a.astype(int) - real).mean() > 5  # a style shift
    # ... but the object is still where it should be, roughly its colour.
    centre = a[28:37, 28:37].reshape(-1, 3).mean(0)
    assert np.abs(centre - COLOURS['blue']).max() < 60
    background = a[:6, :6].reshape(-1, 3).mean(0)
    assert np.abs(background - BACKGROUNDS['grass']).max() < 60
