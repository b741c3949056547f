"""Tests of COCOCaptionMetric / score_captions on hand-built captions."""
import json

import pytest

from pcm_plugin.evaluation.caption_metric import (
    PAPER_SCALE,
    COCOCaptionMetric,
    check_spice_jars,
    ptb_tokenize,
    score_captions,
)
from pcm_plugin.evaluation.coco_gt import load_coco_gt, write_coco_gt
from pcm_plugin.testing.caption_reference import (
    pycocoevalcap_sequential,
    registered_metric,
)

REFERENCES = {
    11: ['A man rides a brown horse on the beach.',
         'a person riding a horse along the sand',
         'A horse and rider near the ocean.'],
    22: ['Two cats sleep on a red sofa.', 'two cats curled up on a couch'],
    33: ['A plate of pasta with tomato sauce.',
         'spaghetti with red sauce on a white plate',
         'a dish of noodles and sauce', 'Pasta on a plate.'],
}
PREDICTIONS = {
    11: 'a man riding a horse on the beach',
    22: 'two cats sleeping on a couch',
    33: 'a plate of food on a table',
}
FAST = ('bleu', 'rouge', 'cider')


def data_samples(predictions):
    """Model outputs as mmpretrain DataSample objects (image_id in meta)."""
    from mmpretrain.structures import DataSample
    samples = []
    for image_id, caption in predictions.items():
        sample = DataSample(metainfo={'image_id': str(image_id)})
        sample.pred_caption = caption
        samples.append(sample)
    return samples


def evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_equals_pycocoevalcap_scorers():
    metric = COCOCaptionMetric(references=REFERENCES, scorers=FAST)
    scores = evaluate(metric, data_samples(PREDICTIONS))
    assert list(scores) == ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4',
                            'ROUGE_L', 'CIDEr']
    # To the bit: one tokenizer call instead of two changes nothing.
    assert scores == pycocoevalcap_sequential(PREDICTIONS, REFERENCES, FAST)
    assert all(type(v) is float for v in scores.values())
    assert 0 < scores['Bleu_4'] < scores['Bleu_1'] < 100
    assert scores['CIDEr'] > 0


def test_scores_are_reported_x100_as_papers_report_them():
    """The log, --out JSON and releases read as the paper's tables:
    pycocoevalcap's numbers times 100, exactly; scale=1 gives its own."""
    bare = pycocoevalcap_sequential(PREDICTIONS, REFERENCES, FAST, scale=1)
    assert 0 < bare['Bleu_1'] < 1  # pycocoevalcap's own scale
    scores = evaluate(COCOCaptionMetric(references=REFERENCES, scorers=FAST),
                      data_samples(PREDICTIONS))
    assert PAPER_SCALE == 100
    assert scores == {k: v * 100 for k, v in bare.items()}
    assert evaluate(COCOCaptionMetric(references=REFERENCES, scorers=FAST,
                                      scale=1),
                    data_samples(PREDICTIONS)) == bare
    assert score_captions(PREDICTIONS, REFERENCES, FAST, scale=1) == bare


def test_identical_caption_gets_full_bleu():
    refs = {1: ['a black dog runs across the green grass'],
            2: ['a red car parked on the street']}
    scores = score_captions({1: refs[1][0], 2: refs[2][0]}, refs,
                            scorers=('bleu', 'rouge'))
    for key in ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'ROUGE_L'):
        assert scores[key] == pytest.approx(100.0, abs=1e-7)
    wrong = score_captions({1: 'a red car', 2: 'a red car'}, refs,
                           scorers='bleu')
    assert wrong['Bleu_1'] < 70


def test_dedup_keeps_first_prediction_per_image():
    samples = [
        {'image_id': 11, 'pred_caption': PREDICTIONS[11]},
        {'image_id': '22', 'pred_caption': PREDICTIONS[22]},
        {'image_id': 22, 'pred_caption': 'a completely different caption'},
        {'image_id': '11', 'pred_caption': 'another one'},
    ]
    metric = COCOCaptionMetric(references=REFERENCES, scorers=FAST)
    scores = evaluate(metric, samples)
    first_only = {11: PREDICTIONS[11], 22: PREDICTIONS[22]}
    assert scores == pytest.approx(
        score_captions(first_only, REFERENCES, FAST), rel=1e-12)
    # Only the predicted images count: CIDEr's IDF comes from 2 images.
    assert scores != pytest.approx(
        score_captions(PREDICTIONS, REFERENCES, FAST), rel=1e-6)


def test_ann_file_equals_in_memory(tmp_path):
    gt_file = tmp_path / 'sub' / 'gt.json'
    write_coco_gt(REFERENCES, str(gt_file))
    gt = json.loads(gt_file.read_text())
    assert gt['images'] == [{'id': 11}, {'id': 22}, {'id': 33}]
    assert [a['id'] for a in gt['annotations']] == list(range(1, 10))
    assert load_coco_gt(str(gt_file)) == REFERENCES

    from pcm_plugin.registry import METRICS
    from_file = evaluate(
        METRICS.build(dict(type='COCOCaptionMetric', ann_file=str(gt_file),
                           scorers=FAST, prefix='val')),
        data_samples(PREDICTIONS))
    in_memory = evaluate(
        COCOCaptionMetric(references=REFERENCES, scorers=FAST),
        data_samples(PREDICTIONS))
    assert from_file == {f'val/{k}': v for k, v in in_memory.items()}


def test_predictions_missing_from_gt(tmp_path):
    gt_file = tmp_path / 'gt.json'
    write_coco_gt(REFERENCES, str(gt_file))
    metric = COCOCaptionMetric(ann_file=str(gt_file), scorers=FAST)
    metric.process(None, [{'image_id': 11, 'pred_caption': 'a horse'},
                          {'image_id': 404, 'pred_caption': 'a cat'}])
    with pytest.raises(ValueError, match=r'gt\.json.*\[404\]'):
        metric.evaluate(2)


def test_clear_errors(tmp_path, monkeypatch):
    missing = tmp_path / 'nope' / 'captions_gt.json'
    with pytest.raises(FileNotFoundError, match='captions_gt.json'):
        COCOCaptionMetric(ann_file=str(missing))
    with pytest.raises(ValueError, match='exactly one of'):
        COCOCaptionMetric()
    with pytest.raises(ValueError, match='unknown or no caption scorers'):
        COCOCaptionMetric(references=REFERENCES, scorers=('bleu', 'bert'))
    not_gt = tmp_path / 'karpathy.json'
    not_gt.write_text(json.dumps([{'image': 'a_1.jpg', 'caption': 'x'}]))
    with pytest.raises(ValueError, match='not a COCO caption gt file'):
        COCOCaptionMetric(ann_file=str(not_gt))
    metric = COCOCaptionMetric(references=REFERENCES, scorers=FAST)
    with pytest.raises(ValueError, match='not int-convertible'):
        metric.process(None, [{'image_id': 'coco_11', 'pred_caption': 'x'}])
    with pytest.raises(KeyError, match='pred_caption'):
        metric.process(None, [{'image_id': 11}])
    with pytest.raises(ValueError, match='no predictions'):
        score_captions({}, REFERENCES)
    monkeypatch.setenv('PATH', str(tmp_path))  # no java there
    with pytest.raises(RuntimeError, match='`java` on PATH'):
        COCOCaptionMetric(references=REFERENCES)
    with pytest.raises(RuntimeError, match='`java` on PATH'):
        score_captions(PREDICTIONS, REFERENCES, FAST)


def test_spice_without_corenlp_jars_fails_fast():
    try:
        check_spice_jars()
    except FileNotFoundError:
        pass
    else:
        pytest.skip('the CoreNLP 3.6.0 jars are installed: SPICE can run')
    with pytest.raises(FileNotFoundError,
                       match='stanford-corenlp-3.6.0-models.jar'):
        COCOCaptionMetric(references=REFERENCES, use_spice=True)
    with pytest.raises(FileNotFoundError, match='use_spice=False'):
        score_captions(PREDICTIONS, REFERENCES, ('bleu', 'spice'))


def test_line_breaks_keep_captions_aligned():
    tokenized = ptb_tokenize({'a': ['A dog.\nA cat!', ''],
                              'b': ['Two\r\ndogs, running.']})
    assert tokenized == {'a': ['a dog a cat', ''], 'b': ['two dogs running']}


def test_all_scorers_equal_bare_pycocoevalcap():
    """The only unit test that pays for METEOR's JVM, twice (about 8 CPU
    seconds each): the metric's concurrent scorers, bulk-fed METEOR and
    JVM flags against pycocoevalcap's own classes one after another."""
    scores = registered_metric(PREDICTIONS, REFERENCES)
    assert list(scores) == ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4',
                            'METEOR', 'ROUGE_L', 'CIDEr']
    assert all(type(v) is float for v in scores.values())
    assert 10 < scores['METEOR'] < scores['Bleu_1']
    assert scores == pycocoevalcap_sequential(PREDICTIONS, REFERENCES)
