"""The mix-up's selection rules in the mini world (issue 26 §3): the
variants' configs, the model they build, and where their pairs land."""
import json
import os.path as osp

import pytest

from pcm_plugin.registry import MODELS
from projects.mini_world.pcm_mini_world.ablation import variant_config
from projects.mini_world.pcm_mini_world.diagnostics import mixup_localisation
from projects.mini_world.pcm_mini_world.names import VARIANTS
from projects.mini_world.pcm_mini_world.scenes import BACKGROUNDS
from tests import helpers

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')
KINDS = ('shape', 'colour', 'background')


def config_of(variant, world, tmp_path):
    return variant_config(CONFIG_DIR, world, variant, rate=0.5, seed=3,
                          work_root=str(tmp_path / 'runs'))


@pytest.mark.parametrize('variant, mixup', [
    ('full_perconcept', dict(selection='per_concept')),
    ('full_nostuff', dict(excluded_words=sorted(BACKGROUNDS))),
])
def test_rule_variants_are_full_but_for_the_selection(tiny_world, variant,
                                                      mixup, tmp_path):
    assert osp.isfile(osp.join(CONFIG_DIR, VARIANTS[variant][0]))
    _, world, _ = tiny_world
    full = config_of('full', world, tmp_path).to_dict()
    ours = config_of(variant, world, tmp_path).to_dict()
    # The lab's stuff list is the world's backgrounds, in any order.
    if 'excluded_words' in ours['model']['mixup']:
        ours['model']['mixup']['excluded_words'].sort()
    assert ours['model']['mixup'] == dict(full['model']['mixup'], **mixup)
    # Everything else, the seed and the training set included, is full's.
    for cfg in (full, ours):
        del cfg['model']['mixup'], cfg['work_dir']
    assert ours == full


@pytest.mark.parametrize('variant', ['full_perconcept', 'full_nostuff'])
def test_rule_variants_build_on_a_world(tiny_world, variant, tmp_path):
    _, world, _ = tiny_world
    mixup = MODELS.build(config_of(variant, world, tmp_path).model).mixup
    assert mixup.selection == ('per_concept' if variant == 'full_perconcept'
                               else 'official')
    if variant == 'full_nostuff':
        assert mixup.concept_writable.tolist() == [
            w not in BACKGROUNDS for w in mixup.concept_words]
    else:
        assert mixup.concept_writable is None


def test_localisation_follows_the_rule(tiny_world):
    _, world, _ = tiny_world
    root = world['root']
    official = mixup_localisation(root, 'test')
    assert mixup_localisation(root, 'test', selection='official',
                              excluded_words=()) == official
    # 4 test images, 5 pairs each: at threshold 0 all 5 retrieved concepts
    # are kept, so one patch per concept makes 5 pairs too.
    per_concept = mixup_localisation(root, 'test', selection='per_concept')
    for where in (official, per_concept):
        assert sum(where[k]['n'] for k in KINDS) == 20
    for selection in ('official', 'per_concept'):
        where = mixup_localisation(root, 'test', selection=selection,
                                   excluded_words=tuple(BACKGROUNDS))
        assert where['background']['n'] == 0
        assert where['shape']['n'] + where['colour']['n'] > 0


def test_diagnose_tool_reports_a_rule_alone(tiny_world, tmp_path):
    _, world, _ = tiny_world
    out = tmp_path / 'diag.json'
    assert helpers.run_tool_main('projects/mini_world/tools/diagnose.py', [
        '--root', world['root'], '--mixup-only', '--selection',
        'per_concept', '--excluded-words', *BACKGROUNDS, '--json', out]) == 0
    with open(out) as f:
        diag = json.load(f)
    assert diag['cosines'] == {} and diag['nearest_neighbour_cider'] == {}
    assert diag['selection'] == 'per_concept'
    assert diag['excluded_words'] == list(BACKGROUNDS)
    where = mixup_localisation(world['root'], 'test',
                               selection='per_concept',
                               excluded_words=tuple(BACKGROUNDS))
    assert diag['mixup_localisation'] == where
    pairs = sum(where[k]['n'] for k in KINDS)
    assert diag['pairs_on_object'] == pytest.approx(
        sum(where[k]['n'] * where[k]['on_object'] for k in KINDS) / pairs)
