"""tools/data/dry_run.py (`make dry-run`): the whole data path end to end
with tiny random models, as a user runs it."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, failed_run
from tools.data import dry_run

STAGES = ('captions', 'vocabulary', 'stand-ins', 'synthesis', 'features',
          'concepts', 'SynC', 'training', 'test', 'caption')


def run_dry_run(*args):
    cmd = [sys.executable, 'tools/data/dry_run.py', *args]
    return cmd, subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=900)


@pytest.mark.slow
def test_every_stage_runs_and_writes_its_output(tmp_path):
    out = tmp_path / 'dry'
    cmd, proc = run_dry_run('--out', str(out))
    assert proc.returncode == 0, failed_run(proc, cmd)
    lines = proc.stdout.splitlines()
    # One line per stage, in order, with its time.
    timed = [re.match(r'\[\s*(\d+)/10\] (\S+)\s+(\d+\.\d) s  \S', line)
             for line in lines]
    timed = [m.groups() for m in timed if m]
    assert [name for _, name, _ in timed] == list(STAGES)
    assert [int(n) for n, _, _ in timed] == list(range(1, 11))
    # Each stage's output exists.
    data = out / 'data'
    for path in (
            'annotations/train.json', 'annotations/val_gt.json',
            'annotations/test_gt.json', 'tokenizer.json',
            'synthetic/manifest.json', 'features/train/index.json',
            'features/val/index.json', 'features/test/index.json',
            'concepts.npz', 'annotations/train_sync.json'):
        assert osp.isfile(data / path), path
    manifest = json.loads((data / 'synthetic/manifest.json').read_text())
    train = json.loads((data / 'annotations/train.json').read_text())
    assert manifest['num_images'] == len(train['data_list']) == 42
    assert osp.isfile(out / 'work' / f'epoch_{dry_run.EPOCHS}.pth')
    metrics = json.loads((out / 'test_metrics.json').read_text())
    assert set(metrics) == {'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'CIDEr'}
    # One caption, a sentence, per test image.
    test = json.loads((data / 'annotations/test.json').read_text())
    captions = json.loads((out / 'captions.json').read_text())
    assert sorted(osp.basename(p) for p in captions) == sorted(
        e['file_name'] for e in test['data_list'])
    assert all(isinstance(c, str) and c.split() for c in captions.values())
    # The config leaves the feature layout to the stores; the run's dumped
    # config has it.
    assert 'patch_dim=None' in (out / 'pcm_dry_run.py').read_text()
    from mmengine.config import Config
    dumped = Config.fromfile(str(out / 'work' / 'pcm_dry_run.py'))
    assert (dumped.model.mixup.patch_dim, dumped.model.mixup.global_dim,
            dumped.model.mixup.num_patches) == (48, 32, 49)
    # Ends with the commands for real data, every stage's tool named.
    real = proc.stdout.split('On real data')[1]
    for tool in ('convert_karpathy.py', 'build_vocab.py', 'synthesize.py',
                 'extract_features.py', 'build_concepts.py encode',
                 'refine_pairs.py', 'dist_train.sh', 'tools/test.py',
                 'caption_image.py'):
        assert tool in real, tool


def test_a_failing_stage_ends_with_the_tools_error_and_its_log(tmp_path):
    captions = tmp_path / 'few.csv'  # 3 images cannot make 3 splits of 3
    captions.write_text('image,caption\n' + ''.join(
        f'p_{i}.jpg,a dog number {i}\n' for i in range(3)))
    out = tmp_path / 'dry'
    cmd, proc = run_dry_run('--out', str(out), '--captions', str(captions))
    assert proc.returncode == 1, failed_run(proc, cmd)
    last = proc.stderr.strip().splitlines()[-1]
    log = out / 'logs' / 'captions.log'
    assert last.startswith('error: data/convert_captions.py exited 1: '
                           'error: ')
    assert last.endswith(f'(command and output: {log})')
    assert 'tools/data/convert_captions.py' in log.read_text()
    assert '[ 1/10]' not in proc.stdout


def test_reruns_replace_only_a_dry_runs_folder(tmp_path, capsys):
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'keep.txt').write_text('x')
    assert dry_run.main(['--out', str(mine)]) == 1
    assert 'was not made by a dry run' in capsys.readouterr().err
    assert (mine / 'keep.txt').read_text() == 'x'
    previous = tmp_path / 'previous'
    dry_run.prepare_out(str(previous))
    (previous / 'old.txt').write_text('x')
    dry_run.prepare_out(str(previous))
    assert sorted(os.listdir(previous)) == ['dry_run.json', 'logs']


@pytest.mark.parametrize('make_dir', [False, True])
def test_synthesis_without_a_model_names_the_dry_run(tmp_path, make_dir):
    from pcm_plugin.data_prep.synthesis import load_pipeline
    model_dir = tmp_path / 'sd'
    if make_dir:
        model_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(
            'No weights yet? `make dry-run` (tools/data/dry_run.py)')):
        load_pipeline(str(model_dir))
    # What it names exists.
    with open(osp.join(REPO_ROOT, 'Makefile')) as f:
        assert re.search(r'^dry-run:.*\n\t\$\(PY\) tools/data/dry_run\.py',
                         f.read(), re.M)
