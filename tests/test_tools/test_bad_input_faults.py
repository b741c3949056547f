"""Bad input and faults at the tools: one clear line naming the file or
key and the fix, and nothing written before is damaged.

(The other bad-input cases sit beside the code they check; ``pytest -k
bad_input`` runs them all, and docs/benchmarks/reliability.md counts
them.)
"""
import os
import os.path as osp
import subprocess
from contextlib import contextmanager

import pytest
import torch

from pcm_plugin.testing.toy_features import toy_config
from tests.helpers import REPO_ROOT, make_char_device, run_tool_main


def _one_line_error(proc, *fragments):
    """The tool failed with one ``error:`` line holding every fragment."""
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines()
             if line.startswith('error: ')]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def config(toy_world, tmp_path):
    path = str(tmp_path / 'toy.py')
    cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1)
    cfg.default_hooks.checkpoint.save_best = None
    cfg.dump(path)
    return path


@pytest.mark.parametrize('key, value, tool', [
    ('model.mixup.type', 'PCMMixupp', 'train'),
    ('train_dataloader.dataset.type', 'SynthCaptionDatset', 'train'),
    ('test_evaluator.type', 'COCOCaptionMetrik', 'test'),
])
def test_bad_input_misspelled_component_type(config, tmp_path, key, value,
                                             tool, tool_in_process):
    ckpt = tmp_path / 'none.pth'
    args = (['tools/train.py', config] if tool == 'train' else
            ['tools/test.py', config, str(ckpt)])
    if tool == 'test':  # a checkpoint that fits: the metric is the fault
        _fitting_checkpoint(config, ckpt)
    proc = tool_in_process(args[0], [*args[1:], '--cfg-options',
                                     f'{key}={value}'], check=False)
    line = _one_line_error(proc, value, 'traceback in')
    assert osp.isfile(line.split('traceback in ')[1].rstrip(')'))


@pytest.mark.parametrize('damage, fragments', [
    ('missing_index', ['index.json not found', 'extract_features.py']),
    ('truncated_annotations', ['is not valid JSON', 'truncated']),
    ('missing_annotations', ['not found', 'convert_karpathy.py']),
])
def test_bad_input_training_data_at_the_train_tool(toy_world, tmp_path,
                                                   damage, fragments,
                                                   tool_in_process):
    cfg = toy_config(toy_world, str(tmp_path / 'work'), max_epochs=1)
    dataset = cfg.train_dataloader.dataset
    if damage == 'missing_index':
        dataset.feature_dir = str(tmp_path / 'no_features')
    elif damage == 'truncated_annotations':
        cut = tmp_path / 'train.json'
        cut.write_text(open(dataset.ann_file).read()[:300])
        dataset.ann_file = str(cut)
    else:
        dataset.ann_file = str(tmp_path / 'absent.json')
    path = str(tmp_path / 'toy.py')
    cfg.dump(path)
    _one_line_error(tool_in_process('tools/train.py', [path], check=False),
                    *fragments)


def test_bad_input_truncated_checkpoint(config, toy_world, tmp_path,
                                        tool_in_process):
    from mmengine.config import Config

    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    from pcm_plugin.registry import MODELS
    model = MODELS.build(Config.fromfile(config).model)
    whole = tmp_path / 'whole.pth'
    torch.save(dict(state_dict=model.state_dict()), whole)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(RuntimeError, match='cut.pth could not be read.*'
                       'truncated'):
        load_local_checkpoint(str(cut))
    proc = tool_in_process('tools/test.py', [config, cut, '--work-dir',
                                             tmp_path / 't'], check=False)
    _one_line_error(proc, 'cut.pth', 'truncated')


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into: a read-only tmpfs for root (who
    ignores permission bits), permission bits otherwise."""
    folder = tmp_path / 'ro'
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with _tmpfs(folder, 'ro', 'a read-only folder'):
        yield folder


@contextmanager
def _tmpfs(folder, options: str, what: str):
    """Mount a tmpfs with ``options`` on ``folder`` (root only; else skip
    the test, saying it could not make ``what``)."""
    import shutil
    if os.geteuid() != 0 or not shutil.which('mount'):
        pytest.skip(f'cannot make {what} here (needs root and mount)')
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', options,
                              'tmpfs', str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f'cannot make {what} here (root without mount rights)')
    try:
        yield
    finally:
        subprocess.run(['umount', str(folder)], check=True)


def test_bad_input_read_only_work_dir(config, read_only_dir,
                                      tool_in_process):
    proc = tool_in_process('tools/train.py', [
        config, '--work-dir', read_only_dir / 'work'], check=False)
    _one_line_error(proc, 'work dir', str(read_only_dir), '--work-dir')


def _full_disk_at(path):
    """Make the next atomic write of ``path`` by this process hit ENOSPC:
    its temporary name becomes a link to /dev/full."""
    if not osp.exists('/dev/full'):
        pytest.skip('no /dev/full')
    os.symlink('/dev/full', f'{path}.tmp{os.getpid()}')


def test_bad_input_disk_full_during_a_checkpoint_save(toy_world, tmp_path):
    """The save fails with one line naming the file and --resume; the
    previous checkpoint and last_checkpoint are untouched, and the run
    resumes from them once there is space."""
    from mmengine.runner import Runner

    from pcm_plugin.cli.launch import errors_as_one_line
    from pcm_plugin.engine.checkpoint import load_local_checkpoint
    work = tmp_path / 'work'

    def train(epochs, resume=False):
        cfg = toy_config(toy_world, str(work), max_epochs=epochs)
        cfg.default_hooks.checkpoint.update(save_best=None, max_keep_ckpts=1)
        cfg.train_cfg.val_interval = 10
        cfg.resume = resume
        cfg.experiment_name = f'e{epochs}{resume}{os.urandom(4).hex()}'
        Runner.from_cfg(cfg).train()

    train(1)
    before = (work / 'epoch_1.pth').read_bytes()
    _full_disk_at(str(work / 'epoch_2.pth'))
    with pytest.raises(SystemExit) as exit_:
        with errors_as_one_line(str(work)):
            train(2, resume=True)
    message = str(exit_.value)
    assert message.startswith('error: could not write checkpoint')
    assert 'epoch_2.pth' in message and 'No space left' in message
    assert '--resume' in message
    assert (work / 'epoch_1.pth').read_bytes() == before
    assert (work / 'last_checkpoint').read_text().endswith('epoch_1.pth')
    assert sorted(p.name for p in work.glob('epoch_*')) == ['epoch_1.pth']
    train(2, resume=True)  # space again
    assert 'state_dict' in load_local_checkpoint(str(work / 'epoch_2.pth'))


def test_bad_input_disk_full_keeps_the_previous_json(tmp_path):
    from pcm_plugin.utils.fileio import atomic_write_json
    out = tmp_path / 'metrics.json'
    out.write_text('{"CIDEr": 1.0}')
    _full_disk_at(str(out))
    with pytest.raises(OSError, match='No space left'):
        atomic_write_json(str(out), {'CIDEr': 2.0})
    assert out.read_text() == '{"CIDEr": 1.0}'
    assert os.listdir(tmp_path) == ['metrics.json']


def _fitting_checkpoint(config, path):
    """A checkpoint of ``config``'s model (so only the fault under test
    stops the tool)."""
    from mmengine.config import Config

    from pcm_plugin.registry import MODELS
    model = MODELS.build(Config.fromfile(config).model)
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


def test_bad_input_out_naming_a_device_node_at_the_test_tool(
        config, tmp_path, tool_in_process):
    """Refused before testing, with one line; the node stays a device."""
    import stat
    node = tmp_path / 'disk'
    make_char_device(node)
    proc = tool_in_process('tools/test.py', [
        config, _fitting_checkpoint(config, tmp_path / 'fit.pth'),
        '--work-dir', tmp_path / 't', '--out', node], check=False)
    _one_line_error(proc, f'--out {node} is a character device',
                    'give a file path')
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_bad_input_checkpoint_name_taken_by_a_device_node(toy_world,
                                                          tmp_path):
    """The checkpoint hook renames onto regular files only: the save
    fails with one line naming the node, which stays a device."""
    import stat

    from mmengine.runner import Runner

    from pcm_plugin.cli.launch import errors_as_one_line
    work = tmp_path / 'work'
    work.mkdir()
    make_char_device(work / 'epoch_1.pth')
    cfg = toy_config(toy_world, str(work), max_epochs=1)
    cfg.default_hooks.checkpoint.save_best = None
    with pytest.raises(SystemExit) as exit_:
        with errors_as_one_line(str(work)):
            Runner.from_cfg(cfg).train()
    assert str(exit_.value).startswith(
        f'error: could not write checkpoint {work}/epoch_1.pth ({work}/'
        'epoch_1.pth is a character device, not a regular file')
    assert stat.S_ISCHR(os.stat(work / 'epoch_1.pth').st_mode)
    assert not list(work.glob('*.tmp*'))


def test_bad_input_build_vocab_min_count_above_every_word(tmp_path, capsys):
    """One line naming the count, the words seen and the fix; no
    tokenizer.json, no stats file."""
    import json
    ann = tmp_path / 'annotations' / 'train.json'
    ann.parent.mkdir()
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=str(i), caption=c) for i, c in enumerate(
            ['a dog runs', 'a dog sits', 'a cat'])])))
    assert run_tool_main('tools/build_vocab.py', [
        ann, '--min-count', 1000000, '--stats-out',
        tmp_path / 'stats.json']) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "error: min_count 1000000 keeps no word: the training captions hold "
        "5 distinct words, the most frequent ('a') seen 3 times, so the "
        'vocabulary would hold the special tokens only; pass --min-count 3 '
        'or lower')
    assert sorted(os.listdir(tmp_path)) == ['annotations']
    assert os.listdir(ann.parent) == ['train.json']


def test_bad_input_extract_features_on_a_full_disk(tmp_path):
    """numpy's short write (no errno) is named as a full disk, with the
    file and how to resume; no temporary file is left."""
    import json

    from PIL import Image

    from pcm_plugin.testing import build_tiny_open_clip
    model, ckpt = build_tiny_open_clip(str(tmp_path / 'clip'),
                                       'pcm-tiny-vit-b32')
    (tmp_path / 'images').mkdir()
    for k in range(5):
        Image.new('RGB', (40, 56), (50 * k, 0, 0)).save(
            tmp_path / 'images' / f'{6000000 + k}.png')
    ann = tmp_path / 'train.json'
    ann.write_text(json.dumps(dict(data_list=[
        dict(image_id=str(6000000 + k), caption='a dot') for k in range(5)])))
    out = tmp_path / 'small'
    out.mkdir()
    # 16 KiB: the settings file fits, the shard's 23.5 KB patch array not.
    with _tmpfs(out, 'size=16k', 'a small disk'):
        with pytest.raises(SystemExit) as exit_:
            run_tool_main('tools/extract_features.py', [
                ann, '--image-dir', tmp_path / 'images', '--out-dir', out,
                '--clip-model', model, '--clip-checkpoint', ckpt,
                '--model-config', tmp_path / 'clip' / f'{model}.json',
                '--shard-size', 5, '--workers', 0, '--no-progress'])
        leftovers = [n for n in os.listdir(out) if '.tmp' in n]
    message = str(exit_.value)
    assert message.startswith(f'error: disk full (or quota) writing {out}/'
                              'shard-'), message
    assert '.patch.npy (' in message and ' requested and ' in message
    assert message.endswith('free space (or raise the quota) and re-run the '
                            'same command to resume: the 0 shards already '
                            'written by this rank are kept and skipped')
    assert leftovers == []


def _exit_line(relpath, argv):
    """A tool's main run in-process must end in SystemExit: its message."""
    with pytest.raises(SystemExit) as exit_:
        run_tool_main(relpath, argv)
    return str(exit_.value)


@pytest.mark.parametrize('option, expected', [
    ('optim_wrapper.optimizer.lr=abc', "optim_wrapper.optimizer.lr='abc': "
     'the config holds a number there (0.0005); give a number'),
    ('train_cfg.max_epochs=abc', "train_cfg.max_epochs='abc': the config "
     'holds a number there (1); give a number'),
    ('model.mixup=abc', "model.mixup='abc': the config holds a section "
     'there; set its keys one by one'),
    ('randomness.deterministic=abc', "randomness.deterministic='abc': the "
     'config holds true or false there (False); give true or false'),
    ('default_hooks.checkpoint.max_keep_ckpts=abc',
     "default_hooks.checkpoint.max_keep_ckpts='abc': the config holds a "
     'number there (3); give a number'),
], ids=['lr', 'max_epochs', 'section', 'bool', 'hook_setting'])
def test_bad_input_cfg_option_of_the_wrong_type_at_train(config, tmp_path,
                                                         option, expected):
    line = _exit_line('tools/train.py', [config, '--cfg-options', option,
                                         '--work-dir', tmp_path / 'w'])
    assert line.startswith(f'error: --cfg-options {expected}'), line
    assert not (tmp_path / 'w' / 'epoch_1.pth').exists()


def test_bad_input_wrong_type_in_the_config_file(toy_world, tmp_path):
    """A wrong-typed setting --cfg-options cannot see (written in the
    file) still ends in one line, the traceback kept."""
    cfg = toy_config(toy_world, str(tmp_path / 'w'), max_epochs=1)
    cfg.optim_wrapper.optimizer.lr = 'abc'
    path = str(tmp_path / 'typo.py')
    cfg.dump(path)
    line = _exit_line('tools/train.py', [path])
    assert line.startswith("error: '<=' not supported between instances of "
                           "'float' and 'str' (a config setting of the wrong "
                           'type?) (traceback in '), line
    assert 'adam.py' in (tmp_path / 'w' / 'error.log').read_text()


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_bad_input_config_that_fails_to_load_at_the_tools(tmp_path, tool):
    path = tmp_path / 'lazy.py'
    path.write_text("import os\nwork_dir = os.path.join('a', 'b')\n")
    args = [path] if tool == 'train' else [path, tmp_path / 'none.pth']
    assert _exit_line(f'tools/{tool}.py', args) == (
        f'error: config {path} could not be loaded ({path}:2: RuntimeError: '
        "a config with `import` lines is read in mmengine's lazy mode, where "
        'calling an imported function fails: write the value itself, or drop '
        'the import)')
    path.write_text('x = 1\n')  # loads, but holds nothing to run
    line = _exit_line(f'tools/{tool}.py', args)
    assert line.startswith(f'error: config {path} has no model, {tool}_'), \
        line


def test_bad_input_config_that_fails_to_load_at_caption_image(tmp_path):
    from PIL import Image
    Image.new('RGB', (8, 8)).save(tmp_path / 'a.png')
    path = tmp_path / 'typo.py'
    path.write_text('a = 1\nb = undefined\n')
    assert _exit_line('tools/caption_image.py', [
        path, tmp_path / 'none.pth', tmp_path / 'a.png']) == (
        f'error: config {path} could not be loaded ({path}:2: NameError: '
        "name 'undefined' is not defined)")


def test_bad_input_batch_size_zero_at_caption_image(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_tool_main('tools/caption_image.py', ['cfg.py', 'ckpt.pth',
                                                 'a.png', '--batch-size', 0])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        'argument --batch-size: 0 is not a positive number (give 1 or more)')


def test_bad_input_folder_without_images_at_caption_image(tmp_path):
    (tmp_path / 'notes.txt').write_text('x')
    (tmp_path / 'photo.heic').write_bytes(b'x')
    assert _exit_line('tools/caption_image.py', [
        'cfg.py', 'ckpt.pth', tmp_path]) == (
        f'error: no image to caption in {tmp_path}: left out 2 non-image '
        'files of the folders (1 x .heic, 1 x .txt; images are .png, .jpg, '
        '.jpeg, .webp, .gif, .bmp, .tif, .tiff)')


@pytest.mark.parametrize('script, args, env, expected', [
    ('dist_train.sh', ['c.py', '0'], {}, "NPROC must be a whole number >= 1 "
     "(processes per node, or auto), got '0'"),
    ('dist_train.sh', ['c.py', 'two'], {}, 'NPROC must be a whole number'),
    ('dist_test.sh', ['c.py', 'k.pth', '-1'], {}, 'NPROC must be a whole'),
    ('dist_test.sh', ['c.py', 'k.pth', '2'], {'NNODES': '0'},
     "NNODES must be a whole number >= 1 (nodes), got '0'"),
    ('slurm_train.sh', ['p', 'job', 'c.py'], {'GPUS': '0'},
     "GPUS must be a whole number >= 1 (tasks in all), got '0'"),
    ('slurm_test.sh', ['p', 'job', 'c.py', 'k.pth'],
     {'GPUS_PER_NODE': 'x'}, 'GPUS_PER_NODE must be a whole number'),
], ids=['train_zero', 'train_word', 'test_negative', 'test_nodes',
        'slurm_train_gpus', 'slurm_test_per_node'])
def test_bad_input_process_counts_at_the_launch_scripts(script, args, env,
                                                        expected):
    proc = subprocess.run(['bash', f'tools/{script}', *args], cwd=REPO_ROOT,
                          env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f'error: {expected}'] or \
        proc.stderr.startswith(f'error: {expected}'), proc.stderr
