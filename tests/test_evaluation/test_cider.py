"""FastCider against pycocoevalcap's Cider: equal to the bit, corpus and
per-image scores, on edge cases and on the real COCO subset."""
import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from pcm_plugin.evaluation.cider import FastCider

# Already tokenized (lower case, no punctuation), as the scorers get them.
GTS = {
    1: ['a man rides a horse on the beach', 'a person riding a horse',
        'a horse and rider near the ocean'],
    2: ['two cats sleep on a red sofa', 'two cats curled up on a couch'],
    3: ['a plate of pasta with tomato sauce', 'pasta on a plate',
        'a dish of noodles and sauce', 'spaghetti on a white plate'],
    4: ['a dog a dog a dog', 'a dog'],
}


def assert_same(gts, res):
    expected, expected_per_image = Cider().compute_score(gts, res)
    got, per_image = FastCider().compute_score(gts, res)
    assert got == expected
    assert per_image.dtype == expected_per_image.dtype
    assert np.array_equal(per_image, expected_per_image)


@pytest.mark.parametrize('res', [
    {1: ['a man riding a horse on the beach'], 2: ['two cats on a couch'],
     3: ['a plate of food'], 4: ['a dog a dog']},
    # A reference itself, an empty caption, unseen words, repeats.
    {1: ['a person riding a horse'], 2: [''], 3: ['zebra zebra zebra'],
     4: ['a dog a dog a dog a dog a dog']},
])
def test_equal_to_pycocoevalcap(res):
    assert_same(GTS, res)


def test_single_image_corpus():
    # log(1) = 0: every weight is 0, every norm 0, the score 0.
    assert_same({4: GTS[4]}, {4: ['a dog']})


@pytest.mark.real_data
def test_equal_on_real_coco(shared_data):
    from pcm_plugin.evaluation.caption_metric import ptb_tokenize
    from pcm_plugin.testing.caption_reference import (
        load_coco_subset,
    )
    predictions, references = load_coco_subset(shared_data)
    tokenized = ptb_tokenize({**{('ref', i): c for i, c in references.items()},
                              **{('pred', i): [c]
                                 for i, c in predictions.items()}})
    ids = sorted(predictions)
    assert_same({i: tokenized[('ref', i)] for i in ids},
                {i: tokenized[('pred', i)] for i in ids})
