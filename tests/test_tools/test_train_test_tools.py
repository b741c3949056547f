"""tools/train.py, tools/test.py and the torchrun scripts, as a user runs them.

The tools' ``main(argv)`` runs in-process (``tests.helpers.call_tool``); the
launcher scripts and torchrun start fresh processes (those tests are marked
slow). The 2-process runs use CPU processes with gloo; their test metrics
must equal the single-process ones (the metric gathers predictions from both
ranks).
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from pcm_plugin.testing.toy_features import toy_config
from tests.helpers import (
    REPO_ROOT,
    call_tool,
    failed_run,
    free_port,
    run_tool,
)


def run(cmd, **kwargs):
    env = dict(os.environ, PYTHON=sys.executable,
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=600, **kwargs)
    assert out.returncode == 0, failed_run(out, cmd)
    return out


@pytest.fixture(scope='module')
def trained(toy_world, tmp_path_factory):
    """One single-process training run through tools/train.py."""
    root = tmp_path_factory.mktemp('tools')
    config = str(root / 'toy_pcm.py')
    toy_config(toy_world, str(root / 'work'), max_epochs=1).dump(config)
    call_tool('tools/train.py', [config, '--cfg-options',
                                 'default_hooks.checkpoint.save_best=None'])
    ckpt = str(root / 'work' / 'epoch_1.pth')
    assert osp.isfile(ckpt)
    return config, ckpt, root


def test_test_tool_writes_metrics(trained, tool_in_process):
    config, ckpt, root = trained
    out = str(root / 'metrics.json')
    tool_in_process('tools/test.py', [config, ckpt, '--out', out,
                                      '--work-dir', root / 'test1'])
    with open(out) as f:
        metrics = json.load(f)
    assert set(metrics) == {'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'CIDEr'}


@pytest.mark.slow
def test_two_process_test_equals_single_process(trained, tool_in_process):
    config, ckpt, root = trained
    single, double = str(root / 'single.json'), str(root / 'double.json')
    tool_in_process('tools/test.py', [config, ckpt, '--out', single,
                                      '--work-dir', root / 'single'])
    os.environ['PORT'] = str(free_port())
    try:
        run(['bash', 'tools/dist_test.sh', config, ckpt, '2', '--out', double,
             '--work-dir', str(root / 'double')])
    finally:
        os.environ.pop('PORT')
    with open(single) as f, open(double) as g:
        assert json.load(f) == pytest.approx(json.load(g), abs=1e-12)


# Every ablation variant (docs/benchmarks/mini_world.md) and both test
# layouts: with find_unused_parameters=False, DDP fails at the second
# iteration if any trainable parameter gets no gradient (Base once built an
# unused text projection).
VARIANT_OPTIONS = {
    'base': ['model.mixup.mode=none', 'model.clip_weighted=False',
             'model.loss.focal=none'],
    'pcm': ['model.clip_weighted=False', 'model.loss.focal=none'],
    'cxe': ['model.mixup.mode=none'],
    'full': [],
    'pcm_replace': ['model.clip_weighted=False', 'model.loss.focal=none',
                    'model.mixup.eval_mode=replace'],
    'full_replace': ['model.mixup.eval_mode=replace'],
}


@pytest.mark.slow
@pytest.mark.parametrize('variant', list(VARIANT_OPTIONS))
def test_two_process_training(toy_world, tmp_path, variant):
    config = str(tmp_path / 'toy_pcm.py')
    toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1).dump(config)
    os.environ['PORT'] = str(free_port())
    try:
        out = run(['bash', 'tools/dist_train.sh', config, '2', '--cfg-options',
                   'default_hooks.checkpoint.save_best=None',
                   'train_cfg.val_interval=1', *VARIANT_OPTIONS[variant]])
    finally:
        os.environ.pop('PORT')
    # 64 samples, batch 8 per rank, 2 ranks: 4 iterations per epoch, then
    # validation on both ranks.
    log = out.stdout + out.stderr
    assert 'Epoch(train) [1][4/4]' in log
    assert 'Epoch(val) [1]' in log
    assert osp.isfile(str(tmp_path / 'work' / 'epoch_1.pth'))


def test_bad_config_path_is_a_clear_error(tool_in_process):
    out = tool_in_process('tools/train.py', ['nope.py'], check=False)
    assert out.returncode != 0 and 'config nope.py not found' in out.stderr


def test_test_tool_dumps_captions_as_coco_results(trained, toy_world,
                                                  tool_in_process):
    config, ckpt, root = trained
    out = str(root / 'preds.json')
    tool_in_process('tools/test.py', [config, ckpt, '--out', out,
                                      '--out-item', 'pred', '--work-dir',
                                      root / 'test2'])
    with open(out) as f:
        preds = json.load(f)
    with open(toy_world['test_gt']) as f:
        image_ids = sorted(im['id'] for im in json.load(f)['images'])
    assert [p['image_id'] for p in preds] == image_ids
    assert all(isinstance(p['caption'], str) for p in preds)


@pytest.mark.parametrize('script, usage', [
    ('tools/dist_train.sh', 'CONFIG NPROC'),
    ('tools/dist_test.sh', 'CONFIG CHECKPOINT NPROC')])
def test_bad_input_launcher_without_arguments_prints_usage(script, usage):
    out = subprocess.run(['bash', script], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert f'usage: bash {script} {usage}' in out.stderr
    assert 'unbound variable' not in out.stderr


def test_bad_input_resume_without_checkpoint_is_an_error(toy_world,
                                                          tmp_path,
                                                          tool_in_process):
    config = str(tmp_path / 'toy_pcm.py')
    toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1).dump(config)
    out = tool_in_process('tools/train.py', [config, '--resume'],
                          check=False)
    assert out.returncode != 0
    assert 'no checkpoint to resume in' in out.stderr
    assert 'Epoch(train)' not in out.stdout + out.stderr  # nothing trained
    (tmp_path / 'work').mkdir(exist_ok=True)
    (tmp_path / 'work' / 'last_checkpoint').write_text(
        str(tmp_path / 'work' / 'epoch_3.pth'))
    out = tool_in_process('tools/train.py', [config, '--resume'],
                          check=False)
    assert out.returncode != 0 and 'epoch_3.pth, which does not' in out.stderr


def test_bad_input_unwritable_out_fails_before_testing(trained, tmp_path,
                                                       tool_in_process):
    config, ckpt, _ = trained
    (tmp_path / 'a_file').write_text('not a folder')
    out = tool_in_process('tools/test.py', [
        config, ckpt, '--out', tmp_path / 'a_file' / 'm.json'], check=False)
    assert out.returncode != 0
    assert 'cannot create folder' in out.stderr
    assert 'Epoch(test)' not in out.stdout + out.stderr


def test_slurm_scripts_build_the_srun_command(tmp_path):
    """A stand-in `srun` records its arguments (no cluster here)."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'srun').write_text('#!/bin/sh\necho "$@" > "$SRUN_LOG"\n')
    (fake / 'srun').chmod(0o755)
    log = tmp_path / 'srun.log'
    env = dict(os.environ, PATH=f'{fake}{os.pathsep}{os.environ["PATH"]}',
               SRUN_LOG=str(log), GPUS='16', GPUS_PER_NODE='8')
    subprocess.run(['bash', 'tools/slurm_train.sh', 'gpu', 'pcm',
                    'configs/pcm_coco.py', 'work_dirs/x', '--amp'],
                   cwd=REPO_ROOT, env=env, check=True)
    args = log.read_text().split()
    assert args[:2] == ['-p', 'gpu'] and '--ntasks=16' in args
    assert '--ntasks-per-node=8' in args and '--gres=gpu:8' in args
    tail = args[args.index('-u') + 1:]
    assert tail[1:] == ['configs/pcm_coco.py', '--launcher', 'slurm',
                        '--work-dir', 'work_dirs/x', '--amp']
    assert tail[0].endswith('tools/train.py')
    subprocess.run(['bash', 'tools/slurm_test.sh', 'gpu', 'pcm', 'c.py',
                    'w.pth', '--out', 'm.json'], cwd=REPO_ROOT, env=env,
                   check=True)
    tail = log.read_text().split()
    assert tail[-6:] == ['c.py', 'w.pth', '--launcher', 'slurm', '--out',
                         'm.json']


@pytest.mark.slow
def test_two_nodes_of_one_process_on_localhost(toy_world, tmp_path):
    """Multi-node torchrun (NNODES, NODE_RANK, MASTER_ADDR, PORT) as two
    'nodes' on this machine, one process each."""
    config = str(tmp_path / 'toy_pcm.py')
    toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1).dump(config)
    env = dict(os.environ, PYTHON=sys.executable, NNODES='2',
               PORT=str(free_port()), MASTER_ADDR='127.0.0.1')
    nodes = [subprocess.Popen(
        ['bash', 'tools/dist_train.sh', config, '1', '--cfg-options',
         'default_hooks.checkpoint.save_best=None'],
        cwd=REPO_ROOT, env=dict(env, NODE_RANK=str(rank)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:]
    # 64 samples, batch 8 per rank, 2 ranks: 4 iterations per epoch.
    assert 'Epoch(train) [1][4/4]' in logs[0]
    assert osp.isfile(str(tmp_path / 'work' / 'epoch_1.pth'))


# Every source of per-rank randomness off: each rank draws its own dropout
# masks and CapDec noise, so with them on the runs differ by design. The
# batch focal factor is per rank too (as in any data-parallel run of the
# official code), so it is off here; the toy captions all have 4 tokens, so
# the mean of the two ranks' token means is the global token mean.
NO_RANDOMNESS = [
    'model.mixup.dropout=0', 'model.mixup.noise_var=0',
    'model.encoder.attn_drop=0', 'model.encoder.hidden_drop=0',
    'model.encoder.ffn_drop=0', 'model.decoder.attn_drop=0',
    'model.decoder.hidden_drop=0', 'model.decoder.word_drop=0',
    'model.decoder.predictor_drop=0', 'model.loss.focal=none',
    'default_hooks.checkpoint.save_best=None']


@pytest.mark.slow
# One epoch is 4 steps, inside the toy config's warm-up: NoamLR's warning is
# right, and beside this test's point.
@pytest.mark.filterwarnings('ignore:NoamLR stops updating:UserWarning')
def test_two_process_training_equals_one_process_with_the_same_batch(
        toy_world, tmp_path):
    """2 processes x batch 8 == 1 process x batch 16 after one epoch (4
    Adam steps): the same samples per step (DefaultSampler gives rank r the
    indices r, r+2, ...) and DDP's gradient mean equals the global batch's
    gradient. Only float summation order differs, so the weights agree to
    float32 round-off (1e-5), not bitwise. Key-projection biases are left
    out: their true gradient is zero (softmax ignores a score shift shared
    by all keys, so they change no output), and Adam scales the round-off
    they get instead into lr-sized steps (measured: 3e-3 against 5e-6 for
    every other tensor)."""
    config = str(tmp_path / 'toy_pcm.py')
    toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1).dump(config)
    one, two = train_one_and_two_processes(config, NO_RANDOMNESS, tmp_path)
    compared = [k for k in one['state_dict'] if not k.endswith('k_proj.bias')]
    assert len(compared) > 40
    worst = max((one['state_dict'][k] - two['state_dict'][k]).abs().max()
                .item() for k in compared)
    assert worst < 1e-5, worst


def train_one_and_two_processes(config, options, root):
    """One epoch of ``config`` (64 toy samples) by tools/train.py: 1
    process (this one, ``main(argv)``) x batch 16 and 2 processes
    (torchrun) x batch 8.

    Args:
        config (str): A dumped config of batch 8.
        options (list[str]): ``--cfg-options`` of both runs.
        root (Path): Where the work directories ``one`` and ``two`` go.

    Returns:
        tuple[dict, dict]: The two final checkpoints (4 iterations each).
    """
    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    call_tool('tools/train.py', [config, '--work-dir', root / 'one',
                                 '--cfg-options',
                                 'train_dataloader.batch_size=16', *options])
    two = run_tool('train.py', [config, '--launcher', 'pytorch',
                                '--work-dir', root / 'two',
                                '--cfg-options', *options], torchrun=True)
    assert 'effective batch 16 = 2 processes x 8' in two.stdout + two.stderr
    one = load_local_checkpoint(str(root / 'one' / 'epoch_1.pth'))
    two = load_local_checkpoint(str(root / 'two' / 'epoch_1.pth'))
    assert one['meta']['iter'] == two['meta']['iter'] == 4
    return one, two
