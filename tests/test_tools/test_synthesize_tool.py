"""tools/synthesize.py end to end: one process, torchrun, resume, errors.

The tool runs in-process (``tool_in_process``); torchrun's two ranks are
fresh processes."""
import json
import os
import os.path as osp

import pytest

from tests import helpers

TOOL = 'tools/synthesize.py'
CAPTIONS = ['a dog on a sofa', 'un café à Paris, 東京', 'two cats', '',
            'a red car', 'three birds on a wire', 'a boat']


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from pcm_plugin.testing import build_tiny_sd_pipeline
    root = tmp_path_factory.mktemp('synth_tool')
    pipe = build_tiny_sd_pipeline(str(root / 'pipe'))
    ann = root / 'train.json'
    ann.write_text(json.dumps(dict(data_list=[
        dict(image_id=str(6000000 + k), caption=c)
        for k, c in enumerate(CAPTIONS)]), ensure_ascii=False),
        encoding='utf-8')
    return root, pipe, str(ann)


def common(setup, out):
    root, pipe, ann = setup
    return [ann, '--model-dir', pipe, '--out-dir', str(out), '--steps', '2',
            '--size', '64', '--batch-size', '2', '--skip-bad',
            '--no-progress']


def folder_bytes(out):
    return {name: open(osp.join(out, 'images', name), 'rb').read()
            for name in sorted(os.listdir(osp.join(out, 'images')))}


def test_help_lists_the_flags(tool_in_process):
    out = tool_in_process(TOOL, ['--help']).stdout
    for flag in ('--model-dir', '--out-dir', '--steps', '--guidance',
                 '--size', '--seed', '--dtype', '--batch-size', '--device',
                 '--skip-bad', '--limit'):
        assert flag in out


@pytest.mark.slow
def test_torchrun_resume_equals_single_process(setup, tool_in_process):
    root = setup[0]
    single = tool_in_process(TOOL, common(setup, root / 'single'))
    summary = json.loads(single.stdout.split('summary: ')[1])
    assert (summary['generated'], summary['skipped_bad']) == (6, 1)
    assert 'generated 6, skipped existing 0, skipped bad 1' in single.stdout

    # A partial single-process run (--limit), finished by 2 ranks.
    tool_in_process(TOOL, common(setup, root / 'ranks') + ['--limit', '3'])
    assert len(os.listdir(root / 'ranks' / 'images')) == 3
    multi = helpers.run_tool('synthesize.py', common(setup, root / 'ranks'),
                             torchrun=True)
    summary = json.loads(multi.stdout.split('summary: ')[1])
    assert (summary['generated'], summary['skipped_existing'],
            summary['world_size']) == (3, 3, 2)

    assert folder_bytes(root / 'ranks') == folder_bytes(root / 'single')
    manifests = [json.load(open(root / d / 'manifest.json'))
                 for d in ('single', 'ranks')]
    assert manifests[0] == manifests[1]
    assert manifests[0]['complete'] and manifests[0]['num_images'] == 6
    assert sorted(os.listdir(root / 'ranks')) == ['images', 'manifest.json']


def test_bad_input_exits_with_a_clear_message(setup, tool_in_process):
    root, pipe, ann = setup
    proc = tool_in_process(TOOL, [ann, '--model-dir', pipe, '--out-dir',
                                  str(root / 'x')], check=False)
    assert proc.returncode == 1
    assert 'error: ' in proc.stderr and 'data_list[3]' in proc.stderr
    assert 'empty caption' in proc.stderr and '--skip-bad' in proc.stderr
    proc = tool_in_process(TOOL, [ann, '--model-dir', str(root / 'nope'),
                                  '--out-dir', str(root / 'x'), '--skip-bad'],
                           check=False)
    assert proc.returncode == 1
    assert f'error: diffusion model directory {root / "nope"} not found' in \
        proc.stderr
