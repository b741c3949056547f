"""tools/extract_features.py end to end: one process vs torchrun, errors.

The tool runs in-process (``tool_in_process``); torchrun's two ranks are
fresh processes."""
import json
import os

import numpy as np
import pytest

from tests import helpers

TOOL = 'tools/extract_features.py'
CAPTIONS = ['a red square', 'a green circle', 'une tasse de café',
            'two blue lines', 'a black dot']


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from PIL import Image

    from pcm_plugin.testing import build_tiny_open_clip
    root = tmp_path_factory.mktemp('extract_tool')
    model, ckpt = build_tiny_open_clip(str(root / 'clip'),
                                       'pcm-tiny-vit-b32')
    os.makedirs(root / 'images')
    rng = np.random.default_rng(0)
    for k in range(len(CAPTIONS)):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
                        ).save(root / 'images' / f'{6000000 + k}.png')
    ann = root / 'train.json'
    ann.write_text(json.dumps(dict(data_list=[
        dict(image_id=str(6000000 + k), caption=c)
        for k, c in enumerate(CAPTIONS)])))
    args = [str(ann), '--image-dir', str(root / 'images'), '--clip-model',
            model, '--model-config', str(root / 'clip' / f'{model}.json'),
            '--batch-size', '2', '--shard-size', '2', '--no-progress']
    return root, ckpt, args


def read_store(root):
    from pcm_plugin.datasets.feature_store import FeatureStore
    store = FeatureStore(str(root))
    return {i: store.get(i) for i in store.ids}


def test_help_lists_the_flags(tool_in_process):
    out = tool_in_process(TOOL, ['--help']).stdout
    for flag in ('--image-dir', '--clip-model', '--clip-checkpoint',
                 '--pretrained', '--model-config', '--pool', '--skip-bad',
                 '--max-pixels', '--merge-only', '--shard-size'):
        assert flag in out


@pytest.mark.slow
def test_torchrun_equals_single_process_and_merge_only(setup,
                                                     tool_in_process):
    root, ckpt, args = setup
    single = tool_in_process(TOOL, args + [
        '--out-dir', str(root / 'single'), '--clip-checkpoint', ckpt,
        '--workers', '0'])
    assert 'extracted 5, skipped existing 0, skipped bad 0' in single.stdout
    multi = helpers.run_tool('extract_features.py', args + [
        '--out-dir', str(root / 'ranks'), '--clip-checkpoint', ckpt,
        '--workers', '1'], torchrun=True)
    summary = json.loads(multi.stdout.split('summary: ')[1])
    assert (summary['extracted'], summary['world_size']) == (5, 2)

    index = [open(root / d / 'index.json').read()
             for d in ('single', 'ranks')]
    assert index[0] == index[1]  # same shards, counts and meta
    ours, theirs = read_store(root / 'ranks'), read_store(root / 'single')
    assert list(ours) == list(theirs) == [str(6000000 + k) for k in range(5)]
    for image_id, item in ours.items():
        assert item['patch'].shape == (49, 48)
        for key in ('patch', 'global_feat'):
            np.testing.assert_allclose(item[key], theirs[image_id][key],
                                       rtol=1e-3, atol=1e-3)
        assert item['clip_cos'] == pytest.approx(
            theirs[image_id]['clip_cos'], abs=1e-4)

    os.remove(root / 'ranks' / 'index.json')
    merged = tool_in_process(TOOL, ['--out-dir', str(root / 'ranks'),
                                    '--merge-only'])
    assert '5 items in 3 shards' in merged.stdout
    assert open(root / 'ranks' / 'index.json').read() == index[0]


def test_wrong_weights_exit_with_a_clear_message(setup, tmp_path,
                                                tool_in_process):
    root, _, args = setup
    from pcm_plugin.testing import build_tiny_open_clip
    _, l14 = build_tiny_open_clip(str(tmp_path), 'pcm-tiny-vit-l14')
    proc = tool_in_process(TOOL, args + ['--out-dir', str(tmp_path / 'o'),
                                         '--clip-checkpoint', l14],
                           check=False)
    assert proc.returncode == 1
    assert f'error: checkpoint {l14} does not fit open_clip model ' \
        "'pcm-tiny-vit-b32'" in proc.stderr
    proc = tool_in_process(TOOL, args + ['--out-dir', str(tmp_path / 'o'),
                                         '--pretrained', 'openai'],
                           check=False)
    assert proc.returncode == 1
    assert "'openai' is not an open_clip tag of pcm-tiny-vit-b32" in \
        proc.stderr
