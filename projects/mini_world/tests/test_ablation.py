"""Ablation bookkeeping: the summary table and the variant configs."""
import os.path as osp

import pytest

from projects.mini_world.pcm_mini_world.ablation import (
    gaps,
    summarize,
    variant_config,
)

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')


def test_summary_table_mean_std_per_cell():
    rows = [
        dict(variant='base', rate=0.3, seed=0, CIDEr=1.0, Bleu_4=0.30),
        dict(variant='base', rate=0.3, seed=1, CIDEr=1.2, Bleu_4=0.32),
        dict(variant='full', rate=0.3, seed=0, CIDEr=1.1, Bleu_4=0.31),
        dict(variant='real', rate=None, seed=0, CIDEr=1.5, Bleu_4=0.40),
    ]
    assert summarize(rows).splitlines() == [
        '| variant | CIDEr @ 0.3 | Bleu_4 @ 0.3 |',
        '| --- | --- | --- |',
        '| base | 110.0 ± 14.1 (n=2) | 31.0 ± 1.4 (n=2) |',
        '| full | 110.0 | 31.0 |',
        '| real | 150.0 | 40.0 |',
    ]


def test_gap_table_pairs_seeds():
    rows = [
        dict(variant='base', rate=0.3, seed=0, CIDEr=1.00),
        dict(variant='base', rate=0.3, seed=1, CIDEr=1.20),
        dict(variant='base', rate=0.3, seed=2, CIDEr=1.10),
        dict(variant='full', rate=0.3, seed=0, CIDEr=1.30),
        dict(variant='full', rate=0.3, seed=1, CIDEr=1.40),
        dict(variant='full', rate=0.3, seed=2, CIDEr=1.60),
        dict(variant='full', rate=0.3, seed=7, CIDEr=9.00),  # no partner
        dict(variant='pcm', rate=0.3, seed=0, CIDEr=1.50),
        dict(variant='real', rate=None, seed=0, CIDEr=1.60),
        dict(variant='real', rate=None, seed=1, CIDEr=1.80),
    ]
    # full - base per seed: 30, 20, 50 -> mean 33.3, sd 15.3, SE 8.8.
    # real - base: 60, 60 -> SE 0. pcm has one seed: no cell.
    assert gaps(rows).splitlines() == [
        '| CIDEr gain over base (paired by seed) | @ 0.3 |',
        '| --- | --- |',
        '| pcm | – |',
        '| full | +33.3 ± 8.8 (n=3) |',
        '| real | +60.0 ± 0.0 (n=2) |',
    ]


def test_rows_of_both_scales_read_as_one():
    """Rows written now carry metric_scale=100 and the metric's ×100
    numbers; committed rows have no scale and hold ×1: the same scores
    give the same tables, mixed or not."""
    from projects.mini_world.pcm_mini_world.ablation import paper_scale
    old = [dict(variant='base', rate=0.3, seed=s, CIDEr=c, Bleu_4=b)
           for s, c, b in ((0, 1.0, 0.30), (1, 1.2, 0.32))]
    old += [dict(variant='full', rate=0.3, seed=s, CIDEr=c, Bleu_4=b)
            for s, c, b in ((0, 1.3, 0.31), (1, 1.6, 0.35))]
    new = [dict(r, metric_scale=100, CIDEr=100 * r['CIDEr'],
                Bleu_4=100 * r['Bleu_4']) for r in old]
    assert paper_scale(old[0], 'CIDEr') == paper_scale(new[0], 'CIDEr') \
        == 100.0
    assert paper_scale(dict(CIDEr=3.5, metric_scale=10), 'CIDEr') == 35.0
    mixed = [new[0], old[1], old[2], new[3]]
    assert summarize(new) == summarize(old) == summarize(mixed)
    assert summarize(mixed).splitlines()[2:] == [
        '| base | 110.0 ± 14.1 (n=2) | 31.0 ± 1.4 (n=2) |',
        '| full | 145.0 ± 21.2 (n=2) | 33.0 ± 2.8 (n=2) |',
    ]
    assert gaps(new) == gaps(old) == gaps(mixed)
    assert '| full | +35.0 ± 5.0 (n=2) |' in gaps(mixed)


def test_ablation_rows_record_the_metric_scale(tmp_path, monkeypatch):
    """A cell's row: the metric's numbers as they come, and their scale."""
    from projects.mini_world.pcm_mini_world import ablation
    root = tmp_path / 'world'
    root.mkdir()
    world = dict(fake_world(str(root)), name='w', settings=dict(seed=0))
    monkeypatch.setattr(ablation, 'load_world', lambda r: world)
    monkeypatch.setattr(ablation, 'train_and_test',
                        lambda cfg: dict(CIDEr=250.5, Bleu_4=60.25))
    rows = ablation.run_ablation(config_dir=CONFIG_DIR, root=str(root),
                                 work_root=str(tmp_path / 'runs'),
                                 rates=[0.6], seeds=[0], variants=['base'],
                                 log=lambda *a: None)
    assert [(r['metric_scale'], r['CIDEr'], r['Bleu_4']) for r in rows] \
        == [(100, 250.5, 60.25)]


def test_the_demo_validates_every_epoch_an_ablation_cell_never(tmp_path):
    """plot_curves draws the demo's CIDEr per epoch; a cell spends no
    time validating (neither changes what trains: RNGStateHook, tested in
    tests/test_engine/test_exact_resume.py)."""
    from mmengine.config import Config

    from projects.mini_world.pcm_mini_world.demo import demo_config
    world = fake_world(str(tmp_path / 'world'))
    config = osp.join(CONFIG_DIR, 'pcm_shapes.py')
    demo = demo_config(config, world, work_dir=str(tmp_path / 'demo'),
                       rate=0.6)
    assert demo.train_cfg.max_epochs == 6
    assert demo.train_cfg.val_interval == 1
    assert demo.val_evaluator.type == 'COCOCaptionMetric'
    assert demo.val_dataloader.dataset.feature_dir == osp.join(
        world['root'], 'features', 'val')
    cell = variant_config(CONFIG_DIR, world, 'full', rate=0.6, seed=0,
                          work_root=str(tmp_path / 'runs'))
    assert cell.val_cfg is None and cell.val_dataloader is None
    assert cell.val_evaluator is None
    for cfg in (demo, cell, Config.fromfile(config)):
        assert any(h['type'] == 'RNGStateHook' for h in cfg.custom_hooks)


def fake_world(root: str) -> dict:
    """A ``world.json`` layout whose files need not exist (configs only)."""
    return dict(
        root=root,
        annotations={k: f'ann/{k}.json'
                     for k in ('train', 'val', 'test', 'val_gt', 'test_gt')},
        features={k: f'features/{k}'
                  for k in ('val', 'test', 'synth_d060', 'real_train')},
        clip=dict(name='pcm-mini-clip', config='clip/c.json',
                  checkpoint='clip/c.pt'),
        concept_bank='concepts.npz', tokenizer='tokenizer.json')


@pytest.mark.parametrize('variant, mode, weighted, focal, train_set', [
    ('base', 'none', False, 'none', 'synth_d060'),
    ('pcm', 'top', False, 'none', 'synth_d060'),
    ('cxe', 'none', True, 'batch', 'synth_d060'),
    ('full', 'top', True, 'batch', 'synth_d060'),
    ('real', 'none', False, 'none', 'real_train'),
    ('cxe_nofocal', 'none', True, 'none', 'synth_d060'),
    ('full_nofocal', 'top', True, 'none', 'synth_d060'),
])
def test_variant_configs_switch_the_two_components(variant, mode, weighted,
                                                   focal, train_set,
                                                   tmp_path):
    root = str(tmp_path / 'world')
    world = fake_world(root)
    cfg = variant_config(CONFIG_DIR, world, variant, rate=0.6, seed=2,
                         work_root=str(tmp_path / 'runs'))
    assert cfg.model.mixup.mode == mode
    assert cfg.model.clip_weighted is weighted
    assert cfg.model.loss.focal == focal
    assert cfg.train_dataloader.dataset.feature_dir == osp.join(
        root, 'features', train_set)
    assert cfg.work_dir == str(tmp_path / 'runs' / 'world' /
                               f'{variant}_{train_set}_s2')
    assert cfg.randomness.seed == 2
    assert cfg.val_cfg is None and cfg.val_dataloader is None
    # Everything else is the full model's.
    assert cfg.model.encoder.num_layers == cfg.model.decoder.num_layers == 2


@pytest.mark.parametrize('variant, threshold, weighted, focal', [
    ('prefix_base', 1.0, False, 'none'),
    ('prefix_full', 0.0, True, 'batch'),
])
def test_prefix_variants_are_the_second_host_on_the_world(
        variant, threshold, weighted, focal, tmp_path):
    """The prefix captioner's cells (the second host): its configs pointed
    at the world like PCMCaptioner's, Base by threshold 1.0 (no patch mixed,
    concepts kept for the hard prompt)."""
    root = str(tmp_path / 'world')
    cfg = variant_config(CONFIG_DIR, fake_world(root), variant, rate=0.6,
                         seed=1, work_root=str(tmp_path / 'runs'))
    assert cfg.model.type == 'PrefixLMCaptioner'
    assert cfg.model.mixup.mode == 'top'
    assert cfg.model.mixup.threshold == threshold
    assert cfg.model.clip_weighted is weighted
    assert cfg.model.loss.focal == focal
    assert cfg.model.tokenizer == osp.join(root, 'tokenizer.json')
    assert cfg.model.mixup.concept_bank == osp.join(root, 'concepts.npz')
    assert cfg.work_dir == str(tmp_path / 'runs' / 'world' /
                               f'{variant}_synth_d060_s1')


def test_plot_has_one_panel_per_world(tmp_path):
    from PIL import Image

    from projects.mini_world.pcm_mini_world.ablation_plot import plot_ablation
    rows = [dict(world=w, variant=v, rate=r, seed=s, CIDEr=1 + 0.1 * s)
            for w in ('a', 'b') for v in ('base', 'full')
            for r in (0.0, 0.3) for s in (0, 1)]
    rows += [dict(world='a', variant='real', rate=None, seed=0, CIDEr=2.0)]
    path = tmp_path / 'plot.png'
    plot_ablation(rows, str(path))
    width, height = Image.open(path).size
    assert (width, height) == (int(2 * 4.2 * 120), int(3.6 * 120))


def test_refined_rows_get_their_own_label_and_paired_sync_gain():
    from projects.mini_world.pcm_mini_world.ablation import sync_gains
    rows = [dict(variant='full', rate=0.6, seed=s, CIDEr=c)
            for s, c in ((0, 1.0), (1, 1.2))]
    rows += [dict(variant='full', refined=True, rate=0.6, seed=s, CIDEr=c)
             for s, c in ((0, 1.1), (1, 1.4), (2, 3.0))]
    rows += [dict(variant='base', refined=False, rate=0.6, seed=s, CIDEr=1.0)
             for s in (0, 1)]
    assert [line.split(' | ')[0] for line in summarize(rows).splitlines()
            ][2:] == ['| base', '| full', '| full+sync']
    # refined - unrefined per seed: 10, 20 -> mean 15, SE 5 (seed 2 alone).
    assert sync_gains(rows).splitlines() == [
        '| CIDEr gain of SynC refinement (paired by seed) | @ 0.6 |',
        '| --- | --- |',
        '| full+sync | +15.0 ± 5.0 (n=2) |',
    ]
    assert sync_gains([r for r in rows if not r.get('refined')]) == ''


def test_refined_cell_trains_on_the_refined_file_with_a_fitted_schedule(
        tmp_path):
    import json
    root = tmp_path / 'world'
    (root / 'refined' / 'synth_d060').mkdir(parents=True)
    (root / 'ann').mkdir()
    for path, num in ((root / 'ann' / 'train.json', 1280),
                      (root / 'refined' / 'synth_d060' / 'train.json', 1200)):
        path.write_text(json.dumps(dict(metainfo={}, data_list=[
            dict(image_id=str(i), caption='c') for i in range(num)])))
    world = fake_world(str(root))
    kw = dict(rate=0.6, seed=2, work_root=str(tmp_path / 'runs'))
    plain = variant_config(CONFIG_DIR, world, 'full', **kw)
    refined = variant_config(CONFIG_DIR, world, 'full', refined=True, **kw)
    assert refined.train_dataloader.dataset.ann_file == str(
        root / 'refined' / 'synth_d060' / 'train.json')
    assert refined.work_dir.endswith('full_synth_d060_sync_s2')
    # batch 64, 6 epochs: 20 x 6 = 120 iterations, 18 x 6 = 108 refined
    assert plain.param_scheduler[-1]['end'] == 120
    assert refined.param_scheduler[-1]['end'] == 108
    # a run shorter than the 100 warm-up iterations keeps its schedule
    short = variant_config(CONFIG_DIR, world, 'full', max_epochs=1, **kw)
    assert short.param_scheduler[-1]['end'] == 750
    with pytest.raises(ValueError, match='nothing to refine'):
        variant_config(CONFIG_DIR, world, 'real', refined=True, **kw)


def test_amp_cell_trains_and_tests_under_bfloat16(tmp_path):
    world = fake_world(str(tmp_path / 'world'))
    kw = dict(rate=0.6, seed=1, work_root=str(tmp_path / 'runs'))
    plain = variant_config(CONFIG_DIR, world, 'full', **kw)
    amp = variant_config(CONFIG_DIR, world, 'full', amp='bfloat16', **kw)
    assert plain.optim_wrapper.type == 'OptimWrapper'
    assert amp.optim_wrapper.type == 'BF16OptimWrapper'
    # The optimiser and its clipping are the config's own.
    assert amp.optim_wrapper.optimizer == plain.optim_wrapper.optimizer
    assert amp.optim_wrapper.clip_grad == plain.optim_wrapper.clip_grad
    assert amp.test_cfg == dict(type='AutocastTestLoop', dtype='bfloat16')
    assert plain.test_cfg == dict()
