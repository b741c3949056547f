"""The demo, in its smoke version: every step on a tiny world, end to end."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_demo_smoke_runs_end_to_end(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    work = tmp_path / 'work'
    # Two epochs: the demo validates after each, so its log has a curve.
    cmd = [sys.executable, 'projects/mini_world/tools/demo.py', '--smoke',
           '--epochs', '2', '--data-root', str(tmp_path / 'world'),
           '--work-dir', str(work)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'Bleu_4 / METEOR / ROUGE_L / CIDEr:' in proc.stdout
    # Quiet: progress and results on the console, mmengine's dumps in the
    # run's log file only.
    console = proc.stdout + proc.stderr
    for noise in ('System environment', 'Config:', 'mmengine - INFO',
                  'PTBTokenizer', 'pkg_resources'):
        assert noise not in console, noise
    # Progress on stderr, as plain lines when it is not a terminal.
    assert '[demo] training: 8/8 iter (100%)' in proc.stderr
    assert 'val_CIDEr=' in proc.stderr
    assert '[demo] captioning the test images: ' in proc.stderr
    assert '\r' not in console
    log_dir = proc.stdout.split('[demo] training log: ')[1].split()[0]
    log = open(osp.join(log_dir, osp.basename(log_dir) + '.log')).read()
    assert 'Config:' in log and 'Epoch(train)' in log
    # tools/analysis/plot_curves.py on the work dir: one CIDEr per epoch.
    from pcm_plugin.visualization.curves import find_scalars, read_scalars
    _, val = read_scalars(find_scalars(str(work)))
    assert [r['step'] for r in val if 'CIDEr' in r] == [1, 2]
    with open(work / 'test_predictions.json') as f:
        preds = json.load(f)
    with open(tmp_path / 'world' / 'world.json') as f:
        world = json.load(f)
    with open(osp.join(world['root'], world['annotations']['test'])) as f:
        test_ids = sorted(int(e['image_id'])
                          for e in json.load(f)['data_list'])
    assert [p['image_id'] for p in preds] == test_ids
    assert osp.getsize(work / 'test_predictions.png') > 1000
    # The run's own dumped config and checkpoint, taken apart by
    # seed_noise.py: the same CIDEr as the demo printed, and the content
    # counts of the captions the demo saved.
    analysed = subprocess.run(
        [sys.executable, 'projects/mini_world/tools/seed_noise.py', '--root',
         str(tmp_path / 'world'), '--config', str(work / 'pcm_shapes.py'),
         '--checkpoint', str(work / 'epoch_2.pth'), '--bootstrap', '2'],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert analysed.returncode == 0, analysed.stderr[-4000:]
    row = json.loads(analysed.stdout.strip().splitlines()[-1])
    printed = proc.stdout.split('ROUGE_L / CIDEr:')[1].splitlines()[0]
    printed = printed.split()[-1]
    assert f"{row['CIDEr']:.1f}" == printed  # both ×100
    assert row['metric_scale'] == 100
    from projects.mini_world.pcm_mini_world.trace import content_recall
    from projects.mini_world.pcm_mini_world.world_steps import load_scenes
    scenes = load_scenes(osp.join(world['root'], 'corpus'), 'test')
    recall = content_recall([p['caption'] for p in preds],
                            [scenes[str(p['image_id'])] for p in preds])
    assert recall == pytest.approx({k: row[k] for k in recall})
    # A second run reuses the world and the trained model.
    again = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert 'reusing the trained model' in again.stdout
    assert 'built in' not in again.stdout


def test_run_digest_follows_config_and_input_files(tmp_path):
    from mmengine.config import Config

    from projects.mini_world.pcm_mini_world.runs import run_digest
    features = tmp_path / 'features'
    features.mkdir()
    files = dict(stamp=features / 'done.json', tok=tmp_path / 'tok.json',
                 bank=tmp_path / 'bank.npz', head=tmp_path / 'clip.pt')
    for name, path in files.items():
        path.write_text(name)
    cfg = Config(dict(
        model=dict(tokenizer=str(files['tok']),
                   mixup=dict(concept_bank=str(files['bank']),
                              clip_head=str(files['head']))),
        train_dataloader=dict(dataset=dict(feature_dir=str(features)))))
    first = run_digest(cfg)
    assert run_digest(cfg) == first
    # Same paths, new content (a re-prepared world): a different run.
    for path in files.values():
        path.write_text('changed')
        changed = run_digest(cfg)
        assert changed != first
        first = changed
    cfg.model.max_len = 30
    assert run_digest(cfg) != first
