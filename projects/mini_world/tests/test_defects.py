"""Salient-object defects: rate, independence, nesting and their effect."""
import numpy as np
import pytest

from projects.mini_world.pcm_mini_world.defects import (
    DEFECT_TYPES,
    apply_defect,
    plan_defect,
)
from projects.mini_world.pcm_mini_world.render import scene_sprites
from projects.mini_world.pcm_mini_world.scenes import COLOURS, generate_split

N = 2000


def _plans(rate, seed=0, num_objects=None, scenes=None):
    plans = []
    for i in range(N):
        n = num_objects if scenes is None else len(scenes[i].objects)
        plans.append(plan_defect(i, n, rate=rate, seed=seed))
    return plans


@pytest.mark.parametrize('rate', [0.0, 0.3, 0.6, 1.0])
def test_defect_rate_is_the_configured_rate(rate):
    observed = np.mean([p is not None for p in _plans(rate, num_objects=2)])
    # 4 binomial standard deviations (0.011 at rate 0.5, n = 2000)
    tol = 4 * np.sqrt(max(rate * (1 - rate), 1e-12) / N)
    assert abs(observed - rate) <= tol


def test_defect_types_are_uniform():
    kinds = [p['type'] for p in _plans(1.0, num_objects=3)]
    counts = np.array([kinds.count(k) for k in DEFECT_TYPES])
    assert np.all(np.abs(counts / N - 0.25) < 4 * np.sqrt(0.1875 / N))


def test_defects_do_not_depend_on_the_scene():
    # The decision and the defect are keyed by (seed, index) only: the same
    # with one-object and three-object scenes, except for the target.
    one = _plans(0.3, num_objects=1)
    three = _plans(0.3, num_objects=3)
    assert [p is None for p in one] == [p is None for p in three]
    assert [p and (p['type'], p['u']) for p in one] == \
        [p and (p['type'], p['u']) for p in three]
    # ... so the rate is the same in every kind of scene.
    scenes, _ = generate_split('train', N, seed=0)
    plans = _plans(0.3, scenes=scenes)
    for size in (1, 2, 3):
        flags = [p is not None for p, s in zip(plans, scenes)
                 if len(s.objects) == size]
        assert abs(np.mean(flags) - 0.3) < 4 * np.sqrt(0.21 / len(flags))


def test_other_seed_gives_other_defects():
    a = [p is None for p in _plans(0.5, seed=0, num_objects=2)]
    b = [p is None for p in _plans(0.5, seed=1, num_objects=2)]
    assert 0.35 < np.mean(np.array(a) != np.array(b)) < 0.65


def test_defects_at_a_lower_rate_are_a_subset_with_identical_defects():
    low = _plans(0.3, num_objects=2)
    high = _plans(0.6, num_objects=2)
    for p_low, p_high in zip(low, high):
        if p_low is not None:
            assert p_low == p_high


def test_each_defect_does_what_it_says():
    scenes, _ = generate_split('train', 200, seed=0)
    seen = set()
    for i, scene in enumerate(scenes):
        plan = plan_defect(i, len(scene.objects), rate=1.0, seed=0)
        before = scene_sprites(scene)
        after = apply_defect(scene, before, plan)
        kind, t = plan['type'], plan['target']
        seen.add(kind)
        if kind == 'missing':
            assert len(after) == len(before) - 1
            assert all(s is not before[t] for s in after)
        elif kind == 'extra':
            assert len(after) == len(before) + 1
            assert after[-1].rgb in COLOURS.values()
        elif kind == 'wrong_colour':
            assert after[t].rgb != before[t].rgb
            assert after[t].rgb in COLOURS.values()
            assert after[t].outline is before[t].outline
        else:
            assert after[t].warp is not None
            # Visibly stretched: principal axes of the outline differ.
            cov = np.cov(after[t].polygon().T)
            axes = np.sqrt(np.linalg.eigvalsh(cov))
            assert axes[1] / axes[0] > 1.3
        others = [j for j in range(len(before)) if j != t]
        if kind in ('wrong_colour', 'distorted'):
            assert all(after[j] is before[j] for j in others)
    assert seen == set(DEFECT_TYPES)
    clean = scene_sprites(scenes[0])
    same = apply_defect(scenes[0], clean, None)
    assert same is not clean and all(a is b for a, b in zip(same, clean))


def test_bad_rate_is_rejected():
    with pytest.raises(ValueError, match='defect rate'):
        plan_defect(0, 1, rate=1.5, seed=0)
