"""Any prepared world is used as it is and never destroyed silently."""
import json
import os.path as osp
import threading

import pytest

from pcm_plugin.utils.fileio import file_sha256
from projects.mini_world.pcm_mini_world import ablation
from projects.mini_world.pcm_mini_world.prepare import prepare_world
from projects.mini_world.pcm_mini_world.world import (
    WorldConflict,
    WorldSettings,
    load_world,
)

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')


@pytest.fixture
def seed7_world(tiny_world, tmp_path):
    """The tiny world's CLIP, world seed 7, at a fresh root."""
    base, _, _ = tiny_world
    settings = WorldSettings(
        root=str(tmp_path / 'w7'), seed=7, num_train=24, num_val=3,
        num_test=4, defect_rates=[0.5], clip_config=base.clip_config,
        clip_checkpoint=base.clip_checkpoint, batch_size=16)
    return settings, prepare_world(settings, progress=False,
                                   log=lambda m: None)


def test_a_different_world_at_the_root_is_refused(seed7_world):
    settings, world = seed7_world
    corpus = osp.join(world['root'], world['annotations']['train'])
    before = file_sha256(corpus)
    other = WorldSettings(**{**settings.__dict__, 'seed': 0})
    with pytest.raises(WorldConflict, match=r"seed: prepared 7 vs asked 0"):
        prepare_world(other, progress=False, log=lambda m: None)
    assert file_sha256(corpus) == before
    assert load_world(settings.root)['identity']['seed'] == 7
    # Adding a defect rate extends the same world and keeps its stores.
    more = WorldSettings(**{**settings.__dict__, 'defect_rates': [0.0]})
    world = prepare_world(more, progress=False, log=lambda m: None)
    assert sorted(world['features']) == ['synth_d000', 'synth_d050', 'test',
                                         'val']
    assert file_sha256(corpus) == before
    # --rebuild replaces it on purpose.
    rebuilt = prepare_world(other, rebuild=True, progress=False,
                            log=lambda m: None)
    assert rebuilt['identity']['seed'] == 0 and file_sha256(corpus) != before


def test_ablation_runs_on_the_prepared_world_as_it_is(seed7_world, tmp_path,
                                                      monkeypatch):
    _, world = seed7_world
    corpus = osp.join(world['root'], world['annotations']['train'])
    before = file_sha256(corpus)
    trained = []

    def fake_train_and_test(cfg):
        trained.append(cfg.train_dataloader.dataset.feature_dir)
        return dict(CIDEr=1.5, Bleu_4=0.4)

    monkeypatch.setattr(ablation, 'train_and_test', fake_train_and_test)
    work_root = str(tmp_path / 'runs')
    rows = ablation.run_ablation(config_dir=CONFIG_DIR, root=world['root'],
                                 work_root=work_root, rates=[0.5],
                                 seeds=[0, 1], variants=['base', 'full'])
    assert [(r['world'], r['world_seed'], r['variant'], r['seed'])
            for r in rows] == [
        (world['name'], 7, 'base', 0), (world['name'], 7, 'full', 0),
        (world['name'], 7, 'base', 1), (world['name'], 7, 'full', 1)]
    assert world['name'] == 'custom-seed7'
    assert all(t.endswith('synth_d050') for t in trained)
    assert file_sha256(corpus) == before
    # A rate the world lacks: a clear error with the command that adds it.
    with pytest.raises(FileNotFoundError,
                       match=r'synth_d060.*--seed 7.*--defect-rates 0.5 0.6'):
        ablation.run_ablation(config_dir=CONFIG_DIR, root=world['root'],
                              work_root=work_root, rates=[0.6], seeds=[0],
                              variants=['base'])


def test_bad_input_sweep_of_another_precision_is_refused(seed7_world,
                                                         tmp_path,
                                                         monkeypatch):
    _, world = seed7_world
    monkeypatch.setattr(ablation, 'train_and_test',
                        lambda cfg: dict(CIDEr=1.0, Bleu_4=0.5))
    kw = dict(config_dir=CONFIG_DIR, root=world['root'],
              work_root=str(tmp_path / 'runs'), rates=[0.5], seeds=[0],
              variants=['base'])
    rows = ablation.run_ablation(amp='bfloat16', **kw)
    assert [r['amp'] for r in rows] == ['bfloat16']
    # The same cell in float32 would be skipped as finished: refused.
    with pytest.raises(ValueError, match='amp=.*bfloat16.*own --work-root'):
        ablation.run_ablation(**kw)
    assert ablation.run_ablation(amp='bfloat16', **kw) == rows


def test_lanes_share_a_sweep_through_cell_claims(tmp_path):
    cell = str(tmp_path / 'runs' / 'w' / 'base_synth_d030_s0')
    first, second = ablation.CellClaim(cell), ablation.CellClaim(cell)
    assert first.acquire()
    assert not second.acquire()  # held by a live process (this one)
    first.release()
    assert second.acquire()
    second.release()
    # A claim left by a dead lane is taken over.
    with open(cell + '.claim', 'w') as f:
        f.write('999999999')
    assert first.acquire()
    first.release()


def test_concurrent_preparation_waits_instead_of_racing(tiny_world,
                                                         tmp_path):
    base, _, _ = tiny_world
    settings = WorldSettings(
        root=str(tmp_path / 'shared'), num_train=24, num_val=3, num_test=4,
        defect_rates=[0.5], clip_config=base.clip_config,
        clip_checkpoint=base.clip_checkpoint, batch_size=16)
    results, errors = [], []

    def lane():
        try:
            results.append(prepare_world(settings, progress=False,
                                         log=lambda m: None))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=lane) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 2
    with open(osp.join(settings.root, 'world.json')) as f:
        assert json.load(f)['features'] == results[0]['features']


def test_a_world_prepared_before_identities_is_compared_by_settings(
        seed7_world):
    settings, world = seed7_world
    path = osp.join(world['root'], 'world.json')
    with open(path) as f:
        legacy = json.load(f)
    legacy.pop('identity')
    with open(path, 'w') as f:
        json.dump(legacy, f)
    other = WorldSettings(**{**settings.__dict__, 'num_test': 9})
    with pytest.raises(WorldConflict, match=r'num_test: prepared 4 vs '
                       r'asked 9'):
        prepare_world(other, progress=False, log=lambda m: None)
    # The same settings are accepted (and the identity written back).
    again = prepare_world(settings, progress=False, log=lambda m: None)
    assert again['identity']['seed'] == 7
