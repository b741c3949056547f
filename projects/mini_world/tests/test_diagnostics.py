"""World diagnostics: defect cosines, loss weights, nearest-neighbour CIDEr."""
import json
import os.path as osp

import numpy as np
import pytest

from pcm_plugin.datasets.feature_store import FeatureStore
from projects.mini_world.pcm_mini_world.diagnostics import (
    defect_cosines,
    mixup_localisation,
    nearest_neighbour_cider,
    synthetic_sets,
)
from tests import helpers


def test_defect_cosines_group_the_stored_cosines(tiny_world):
    _, world, _ = tiny_world
    root = world['root']
    store = FeatureStore(osp.join(root, world['features']['synth_d050']))
    with open(osp.join(root, 'images/synth_d050/defects.json')) as f:
        defects = json.load(f)
    stats = defect_cosines(root, 'synth_d050', alpha=3.0)
    assert sum(g['n'] for g in stats.values()) == 24
    for kind, group in stats.items():
        ids = [i for i, d in defects.items()
               if (d['type'] if d else 'clean') == kind]
        cos = np.array([store.get(i)['clip_cos'] for i in ids])
        assert group['n'] == len(ids)
        assert group['mean'] == pytest.approx(cos.mean(), abs=1e-6)
        # The weight is the loss's clamp(alpha * cos, 0, 1).
        assert group['weight'] == pytest.approx(
            np.clip(3.0 * cos, 0, 1).mean(), abs=1e-6)
    assert set(defect_cosines(root, 'synth_d000')) == {'clean'}


def test_nearest_neighbour_cider_per_training_set(tiny_world):
    _, world, _ = tiny_world
    assert synthetic_sets(world['root']) == ['synth_d000', 'synth_d050']
    scores = nearest_neighbour_cider(world['root'])
    assert sorted(scores) == ['synth_d000', 'synth_d050']
    assert all(0 <= v < 1000 for v in scores.values())


def test_mixup_localisation_accounts_for_every_pair(tiny_world):
    _, world, _ = tiny_world
    where = mixup_localisation(world['root'], 'test', top_m=3)
    kinds = ('shape', 'colour', 'background')
    # 4 test images x 3 pairs; shares are counts of 12.
    assert sum(where[k]['share'] for k in kinds) == pytest.approx(1.0)
    for k in kinds:
        assert (where[k]['share'] * 12) == pytest.approx(
            round(where[k]['share'] * 12))
        assert 0 <= where[k]['on_object'] <= 1
        assert 0 <= where[k]['on_match'] <= 1
    assert 0 < where['object_patches'] < 1


def test_diagnose_tool_writes_json(tiny_world, tmp_path):
    _, world, _ = tiny_world
    out = tmp_path / 'diag.json'
    assert helpers.run_tool_main('projects/mini_world/tools/diagnose.py', [
        '--root', world['root'], '--json', out]) == 0
    with open(out) as f:
        diag = json.load(f)
    assert diag['alpha'] == 2.5
    assert sorted(diag['cosines']) == ['synth_d000', 'synth_d050']
    assert diag['cosines']['synth_d000']['clean']['n'] == 24
    assert set(diag['mixup_localisation']) == {
        'shape', 'colour', 'background', 'object_match', 'object_patches'}
