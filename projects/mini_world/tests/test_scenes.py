"""The scene sampler and caption templates of the mini world."""
import numpy as np
import pytest

from projects.mini_world.pcm_mini_world.scenes import (
    CANVAS,
    COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    describe,
    describe_many,
    generate_split,
    num_templates,
    relation,
    scene_rng,
)


def _obj(shape, colour, cell, size='medium'):
    x = (cell[1] + 0.5) * CANVAS / 3
    y = (cell[0] + 0.5) * CANVAS / 3
    return SceneObject(shape=shape, colour=colour, size=size, cell=cell,
                       x=x, y=y, radius=8.0)


def test_same_seed_same_corpus_other_seed_differs():
    a = generate_split('train', 50, seed=3)
    b = generate_split('train', 50, seed=3)
    c = generate_split('train', 50, seed=4)
    assert [s.to_dict() for s in a[0]] == [s.to_dict() for s in b[0]]
    assert a[1] == b[1]
    assert a[1] != c[1]


def test_scene_k_does_not_depend_on_split_size_or_other_splits():
    small = generate_split('test', 5, seed=0, refs=5)
    large = generate_split('test', 40, seed=0, refs=5)
    assert small[1] == large[1][:5]
    train = generate_split('train', 5, seed=0)
    assert [s.to_dict() for s in train[0]] != [s.to_dict() for s in small[0]]


def test_scenes_are_valid_and_objects_do_not_touch():
    scenes, _ = generate_split('train', 300, seed=1)
    counts = {1: 0, 2: 0, 3: 0}
    for scene in scenes:
        counts[len(scene.objects)] += 1
        cells = [o.cell for o in scene.objects]
        assert len(set(cells)) == len(cells)
        for o in scene.objects:
            assert o.radius <= o.x <= CANVAS - o.radius
            assert o.radius <= o.y <= CANVAS - o.radius
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1:]:
                assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius
    assert min(counts.values()) > 30  # all scene sizes occur


def test_every_template_names_every_object_colour_and_shape():
    scenes, _ = generate_split('val', 60, seed=2)
    for k, scene in enumerate(scenes):
        for template in range(num_templates(scene)):
            caption = describe(scene, scene_rng(0, 'val', k), template)
            for obj in scene.objects:
                assert f'{obj.colour} {obj.shape}' in caption or (
                    f'{obj.colour} ' in caption and obj.shape in caption), \
                    (caption, obj)


def test_captions_never_name_an_absent_colour_or_shape():
    scenes, captions = generate_split('train', 300, seed=5)
    for scene, (caption,) in zip(scenes, captions):
        words = set(caption.replace(',', ' ').split())
        assert words & set(COLOURS) == {o.colour for o in scene.objects}
        assert words & set(SHAPES) == {o.shape for o in scene.objects}


def test_relation_matches_geometry():
    rng = np.random.default_rng(0)
    left, right = _obj('circle', 'red', (1, 0)), _obj('star', 'blue', (1, 2))
    assert {relation(left, right, rng) for _ in range(10)} == {'left'}
    assert {relation(right, left, rng) for _ in range(10)} == {'right'}
    top, bottom = _obj('heart', 'red', (0, 1)), _obj('cross', 'red', (2, 1))
    assert {relation(top, bottom, rng) for _ in range(10)} == {'above'}
    diag = {relation(_obj('square', 'red', (0, 0)), bottom, rng)
            for _ in range(40)}
    assert diag == {'left', 'above'}


def test_two_object_caption_relation_is_true():
    scene = Scene(background='snow', objects=[
        _obj('circle', 'red', (1, 0)), _obj('star', 'blue', (1, 2))])
    for seed in range(30):
        caption = describe(scene, np.random.default_rng(seed), template=0)
        first = caption.index('circle') < caption.index('star')
        said_left = ' left of ' in caption
        # "red circle ... left of ... blue star" or the converse.
        assert said_left == first, caption


def test_references_come_from_distinct_templates():
    scene = Scene(background='sky', objects=[_obj('heart', 'green', (1, 1))])
    refs = describe_many(scene, np.random.default_rng(0), 5)
    assert len(set(refs)) == 5
    with pytest.raises(ValueError, match='templates'):
        describe_many(scene, np.random.default_rng(0), 9)
