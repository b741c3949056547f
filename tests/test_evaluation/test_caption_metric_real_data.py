"""COCOCaptionMetric against scores published for real caption examples.

Data: ``<repo>/../shared/data/caption-metric-examples`` (the clipscore and
pacscore ``example/`` folders plus ``expected_scores.json``, which holds the
BLEU/METEOR/ROUGE-L/CIDEr values their READMEs publish, on pycocoevalcap's
0..1 scale, rounded to 4 decimals). One METEOR JVM start per candidate
file: about 40 s on an idle 2-core machine, 90 s on a busy one, hence slow.
"""
import json
from pathlib import Path

import pytest

EXAMPLES = 'caption-metric-examples'
# expected_scores.json name -> our metric key.
KEYS = {
    'BLEU-1': 'Bleu_1',
    'BLEU-2': 'Bleu_2',
    'BLEU-3': 'Bleu_3',
    'BLEU-4': 'Bleu_4',
    'METEOR': 'METEOR',
    'ROUGE-L': 'ROUGE_L',
    'CIDEr': 'CIDEr',
}
CANDIDATE_FILES = [
    'clipscore/good_captions.json', 'clipscore/bad_captions.json',
    'pacscore/good_captions.json', 'pacscore/bad_captions.json'
]

# ``shared_data`` (tests/conftest.py) skips when ../shared/data is absent.
pytestmark = pytest.mark.real_data


def image_number(name: str) -> int:
    """``'image2'`` -> 2: the metric needs integer image ids."""
    return int(name.replace('image', ''))


@pytest.mark.slow
@pytest.mark.parametrize('candidate_file', CANDIDATE_FILES)
def test_reproduces_published_scores(candidate_file, tmp_path, shared_data):
    from mmpretrain.structures import DataSample

    from pcm_plugin.evaluation.caption_metric import COCOCaptionMetric
    from pcm_plugin.evaluation.coco_gt import write_coco_gt

    data_dir = Path(shared_data) / EXAMPLES
    expected = json.loads((data_dir / 'expected_scores.json').read_text())
    expected = expected[candidate_file]
    refs = json.loads((data_dir / expected['refs']).read_text())
    candidates = json.loads((data_dir / candidate_file).read_text())
    gt_file = tmp_path / 'gt.json'
    write_coco_gt({image_number(k): v for k, v in refs.items()}, gt_file)

    metric = COCOCaptionMetric(ann_file=str(gt_file))
    metric.process(None, [
        DataSample(metainfo={'image_id': str(image_number(name))},
                   pred_caption=caption)
        for name, caption in candidates.items()
    ])
    scores = metric.evaluate(len(candidates))

    published = {k: v for k, v in expected.items() if k in KEYS}
    assert len(published) >= 5
    for name, value in published.items():
        ours = scores[KEYS[name]]  # ×100, the published values ×1
        assert abs(ours - 100 * value) <= 100 * (5e-5 + 1e-12), (
            name, ours, value)


def test_fakecap_candidate_ngram_counts(shared_data):
    """The 1,000 COCO fake-cap candidates tokenize to the published counts.

    coco-caption's demo reports testlen 9893 and guess n-gram counts
    [9893, 8893, 7893, 6893] after PTB tokenization (no gt shipped here).
    """
    from pcm_plugin.evaluation.caption_metric import ptb_tokenize
    results = json.loads(
        (Path(shared_data) / EXAMPLES / 'coco-caption' /
         'captions_val2014_fakecap_results.json').read_text())
    assert len(results) == 1000
    tokenized = ptb_tokenize(
        {index: [r['caption']] for index, r in enumerate(results)})
    lengths = [len(tokenized[i][0].split()) for i in range(len(results))]
    guess = [sum(max(n - k, 0) for n in lengths) for k in range(4)]
    assert guess == [9893, 8893, 7893, 6893]


@pytest.mark.slow
def test_fast_path_equals_bare_scorers_on_coco_slice(shared_data):
    """500 real COCO images (first caption against the others): the
    registered metric and pycocoevalcap's scorers one after another agree
    to the bit, METEOR included (two METEOR JVMs: about 30 s)."""
    from pcm_plugin.testing.caption_reference import (
        load_coco_subset,
        pycocoevalcap_sequential,
        registered_metric,
    )
    predictions, references = load_coco_subset(shared_data, limit=500)
    assert len(predictions) == 500
    assert all(len(r) >= 4 for r in references.values())
    ours = registered_metric(predictions, references)
    assert ours == pycocoevalcap_sequential(predictions, references)
    assert list(ours) == ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR',
                          'ROUGE_L', 'CIDEr']
