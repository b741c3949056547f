"""The concept-token probe: which checkpoints it re-tests, and how."""
import json
import os.path as osp

import pytest

from projects.mini_world.pcm_mini_world import probe

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')


def test_probe_retests_pcm_cells_once_without_tokens(tiny_world, tmp_path,
                                                     monkeypatch):
    from mmengine.config import Config
    _, world, _ = tiny_world
    epochs = Config.fromfile(osp.join(CONFIG_DIR, 'pcm_shapes.py')
                             ).train_cfg.max_epochs
    last = f'epoch_{epochs}.pth'
    work_root = tmp_path / 'ablation'
    work_root.mkdir()
    # Seed 0's rows as committed (no scale: ×1), seed 1's as written now.
    rows = [dict(world=world['name'], variant=v, rate=0.5, seed=s,
                 **(dict(CIDEr=1.0) if s == 0 else
                    dict(CIDEr=200.0, metric_scale=100)))
            for v in ('base', 'pcm', 'full') for s in (0, 1)]
    # A row of another world with the same cell is not this world's.
    rows.append(dict(world='other-seed3', variant='pcm', rate=0.5, seed=0,
                     CIDEr=9.0))
    with open(work_root / 'results.jsonl', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    tested = []

    def fake_test(cfg, checkpoint):
        tested.append((cfg.work_dir, checkpoint, cfg.model.mixup.mode))
        return dict(CIDEr=25.0)  # the metric's ×100

    monkeypatch.setattr(probe, 'retest_without_concept_tokens', fake_test)
    kw = dict(config_dir=CONFIG_DIR, root=world['root'],
              work_root=str(work_root))
    with pytest.raises(FileNotFoundError, match='pcm_synth_d050_s0'):
        probe.probe_concept_tokens(**kw)
    cells = work_root / world['name']
    for row in rows[:-1]:
        cell = cells / f'{row["variant"]}_synth_d050_s{row["seed"]}'
        cell.mkdir(parents=True, exist_ok=True)
        (cell / last).touch()
    out = probe.probe_concept_tokens(**kw)
    # Both on the paper's ×100, whatever the ablation row's scale.
    assert [(r['variant'], r['seed'], r['CIDEr_with'], r['CIDEr_without'],
             r['metric_scale']) for r in out] == [
        ('pcm', 0, 100.0, 25.0, 100), ('pcm', 1, 200.0, 25.0, 100),
        ('full', 0, 100.0, 25.0, 100), ('full', 1, 200.0, 25.0, 100)]
    cell = str(cells / 'pcm_synth_d050_s1')
    assert (cell, osp.join(cell, last), 'top') in tested
    assert {r['world'] for r in out} == {world['name']}
    assert len(tested) == 4
    # A rerun skips finished cells.
    assert probe.probe_concept_tokens(**kw) == out and len(tested) == 4
    # A sweep run with --epochs 4 is probed at its own last checkpoint.
    (work_root / 'probe.jsonl').unlink()
    with pytest.raises(FileNotFoundError, match='epoch_4.pth'):
        probe.probe_concept_tokens(max_epochs=4, **kw)
    for row in rows[:-1]:
        (cells / f'{row["variant"]}_synth_d050_s{row["seed"]}' /
         'epoch_4.pth').touch()
    probe.probe_concept_tokens(max_epochs=4, **kw)
    assert tested[-1][1].endswith('epoch_4.pth') and len(tested) == 8


def test_retest_without_concept_tokens_switches_the_mixup_off(monkeypatch):
    from mmengine.config import Config
    seen = {}

    class FakeRunner:
        @staticmethod
        def from_cfg(cfg):
            seen['cfg'] = cfg
            return FakeRunner()

        def test(self):
            return dict(CIDEr=0.5)

    monkeypatch.setattr('mmengine.runner.Runner', FakeRunner)
    cfg = Config(dict(model=dict(mixup=dict(mode='top')),
                      test_evaluator=dict(scorers=('bleu', 'spice'))))
    assert probe.retest_without_concept_tokens(cfg, 'w/epoch_4.pth') == dict(
        CIDEr=0.5)
    assert seen['cfg'].model.mixup.mode == 'none'
    assert seen['cfg'].load_from == 'w/epoch_4.pth'
    assert 'spice' not in seen['cfg'].test_evaluator.scorers
    assert cfg.model.mixup.mode == 'top'  # the caller's config is untouched


def test_probe_table_reads_rows_of_both_scales(monkeypatch, capsys):
    """probe.jsonl rows as committed (×1, no scale) and as written now
    (×100, metric_scale=100) print the same table."""
    from tests.helpers import tool_main
    rows = [dict(variant='full', rate=0.3, seed=0, CIDEr_with=3.0,
                 CIDEr_without=2.5),
            dict(variant='full', rate=0.3, seed=1, CIDEr_with=320.0,
                 CIDEr_without=300.0, metric_scale=100)]
    monkeypatch.setattr(probe, 'probe_concept_tokens', lambda **kw: rows)
    assert tool_main('projects/mini_world/tools/probe_concepts.py')([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:4] == ['| full | 0.3 | 0 | 300.0 | 250.0 | +50.0 |',
                          '| full | 0.3 | 1 | 320.0 | 300.0 | +20.0 |']
    assert lines[-1] == 'mean difference +35.0 ± 21.2 (std, n=2)'
