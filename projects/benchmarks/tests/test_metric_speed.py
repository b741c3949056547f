"""The benchmark's "evaluation" row: the registered metric against bare
pycocoevalcap scorers (plumbing and equality only; no timing asserted)."""
import json

import pytest

from projects.benchmarks.pcm_benchmarks.metric_speed import (
    SMOKE_IMAGES,
    SMOKE_SCORERS,
    compare_with_pycocoevalcap,
    evaluation_row,
    human_agreement_split,
)
from tests.helpers import tool_main
from tests.test_evaluation.test_caption_metric import (
    FAST,
    PREDICTIONS,
    REFERENCES,
)


def test_human_agreement_split():
    predictions, references = human_agreement_split(
        {7: ['first', 'second', 'third'], 3: ['only one'], 5: ['a', 'b']})
    assert predictions == {5: 'a', 7: 'first'}
    assert references == {5: ['b'], 7: ['second', 'third']}
    assert human_agreement_split({7: ['x', 'y'], 5: ['a', 'b']},
                                 limit=1) == ({5: 'a'}, {5: ['b']})


def test_compare_on_hand_built_captions():
    row = compare_with_pycocoevalcap(PREDICTIONS, REFERENCES, scorers=FAST,
                                     reps=2, warmup=0)
    assert row['identical'] is True
    assert (row['images'], row['references']) == (3, 9)
    assert list(row['scores']) == ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4',
                                   'ROUGE_L', 'CIDEr']
    for name in ('pycocoevalcap', 'metric'):
        assert row['times'][name]['runs'] == 2
        assert row['times'][name]['cpu_s'] > 0
    assert set(row['metric_over_pycocoevalcap']) == {'wall', 'cpu'}


def test_row_skipped_with_a_note_without_shared_data(tmp_path):
    row = evaluation_row(str(tmp_path / 'no_shared'))
    assert set(row) == {'skipped'}
    assert 'captions_val2014_subset.json not found' in row['skipped']
    for folder in (None, ''):  # no folder named: no default is guessed
        assert evaluation_row(folder) == dict(skipped=(
            'no real data folder given (--shared-data DIR, a folder '
            'holding coco-val2014-captions/captions_val2014_subset.json)'))


def test_benchmark_tool_evaluation_only_without_shared_data(tmp_path,
                                                             capsys):
    out = tmp_path / 'bench.json'
    assert tool_main('projects/benchmarks/tools/benchmark.py')(
        ['--evaluation-only', '--smoke', '--shared-data',
         str(tmp_path / 'absent'), '--out', str(out)]) == 0
    report = json.loads(out.read_text())
    assert 'not found' in report['evaluation']['skipped']
    assert 'startup' not in report and 'train_step' not in report
    assert 'evaluation skipped:' in capsys.readouterr().out


def test_benchmark_tool_reads_no_data_folder_it_is_not_given(tmp_path):
    out = tmp_path / 'bench.json'
    assert tool_main('projects/benchmarks/tools/benchmark.py')(
        ['--evaluation-only', '--smoke', '--out', str(out)]) == 0
    skipped = json.loads(out.read_text())['evaluation']['skipped']
    assert skipped.startswith('no real data folder given')


@pytest.mark.real_data
def test_smoke_row_on_real_coco(shared_data):
    row = evaluation_row(shared_data, smoke=True)
    assert row['identical'] is True
    assert row['images'] == SMOKE_IMAGES
    assert row['scorers'] == list(SMOKE_SCORERS)
    assert 'first caption' in row['predictions']
