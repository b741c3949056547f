"""tools/data/import_official.py: subcommands end to end, one-line errors
that name the bad file, and the same store from one process or two."""
import json
import os
import os.path as osp

import pytest

from tests.helpers import run_tool, run_tool_main
from tests.official_release import RunsCode, make_release, write_pickle

TOOL = 'tools/data/import_official.py'
CAPTIONS = ['a dog on the grass', 'a red cat', 'the UNK on a dog',
            'a cat on the red grass', 'a dog', 'the cat']


@pytest.fixture
def release(tmp_path):
    return make_release(str(tmp_path / 'release'), CAPTIONS,
                        [0, 0, 1, 1, 2, 2], [0.3] * 6)


def last_summary(out: str) -> dict:
    line = [x for x in out.splitlines() if x.startswith('summary: ')][-1]
    return json.loads(line[len('summary: '):])


def test_annotations_features_and_results(release, tmp_path, capsys):
    data = tmp_path / 'data'
    assert run_tool_main(TOOL, [
        'annotations', release['train'], '--vocabulary',
        release['vocabulary'], '--split', 'train', '--out', data]) == 0
    summary = last_summary(capsys.readouterr().out)
    assert (summary['records'], summary['entries']) == (6, 6)
    assert run_tool_main(TOOL, [
        'features', data / 'annotations' / 'train.json', '--feats-folder',
        release['feats'], '--out-dir', data / 'feats',
        '--shard-size', 4]) == 0
    summary = last_summary(capsys.readouterr().out)
    assert (summary['imported'], summary['num_items']) == (6, 6)
    preds = tmp_path / 'preds.json'
    preds.write_text('[{"image_id": 3, "caption": "a dog"}]')
    assert run_tool_main(TOOL, ['export', 'results', preds, '--out',
                                tmp_path / '7.json']) == 0
    assert json.loads((tmp_path / '7.json').read_text()) == [
        dict(image_id=3, caption='a dog .')]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


def test_code_running_pickle_is_one_line_and_writes_nothing(
        release, tmp_path, capsys):
    marker = tmp_path / 'ran'
    evil = write_pickle(str(tmp_path / 'evil.pkl'),
                        [dict(image_id='1', x=RunsCode(marker))])
    assert run_tool_main(TOOL, ['annotations', evil, '--vocabulary',
                                release['vocabulary'], '--split', 'train',
                                '--out', tmp_path / 'out']) == 1
    line = one_error_line(capsys.readouterr().err)
    assert 'evil.pkl: refusing to load global' in line
    assert not marker.exists() and not (tmp_path / 'out').exists()


def test_truncated_npz_is_one_line_naming_it(release, tmp_path, capsys):
    data = tmp_path / 'data'
    run_tool_main(TOOL, ['annotations', release['train'], '--vocabulary',
                         release['vocabulary'], '--split', 'train',
                         '--out', data])
    bad = osp.join(release['feats'] + '_sp2', '6000005.npz')
    with open(bad, 'r+b') as f:
        f.truncate(40)
    capsys.readouterr()
    assert run_tool_main(TOOL, [
        'features', data / 'annotations' / 'train.json', '--feats-folder',
        release['feats'], '--out-dir', data / 'feats']) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f'error: {bad}: truncated or damaged .npz')


@pytest.mark.slow
def test_two_processes_write_the_same_store_as_one(release, tmp_path,
                                                  tool_in_process):
    data = tmp_path / 'data'
    run_tool_main(TOOL, ['annotations', release['train'], '--vocabulary',
                         release['vocabulary'], '--split', 'train',
                         '--out', data])
    stores = {}
    for n, torchrun in (('one', False), ('two', True)):
        args = ['features', data / 'annotations' / 'train.json',
                '--feats-folder', release['feats'], '--out-dir', data / n,
                '--shard-size', 2]
        proc = run_tool(TOOL[len('tools/'):], args, torchrun=True) \
            if torchrun else tool_in_process(TOOL, args)
        assert last_summary(proc.stdout)['imported'] == 6
        folder = data / n
        stores[n] = {f: (folder / f).read_bytes() for f in
                     sorted(os.listdir(folder)) if f.startswith('shard')}
    assert stores['one'] == stores['two'] and len(stores['one']) == 9
