"""The frequent-noun heuristic on hand-built captions."""
import pytest

from pcm_plugin.data_prep.nouns import (
    caption_words,
    count_nouns,
    frequent_nouns,
    phrase_heads,
    singular,
)


@pytest.mark.parametrize('caption,heads', [
    ('a man riding a horse on the beach', ['man', 'horse', 'beach']),
    ('A red double decker bus driving down the street.', ['bus', 'street']),
    ('a cat sits on a bed', ['cat', 'bed']),
    ('two dogs playing in the snow', ['dogs', 'snow']),
    ('people playing tennis', ['tennis']),
    ('a woman wearing sunglasses holding an umbrella',
     ['woman', 'sunglasses', 'umbrella']),
    ('a large dining table in a living room', ['table', 'room']),
    ('A plate of veggies next to two forks.', ['plate', 'veggies', 'forks']),
    ('He is going to sit', []),
])
def test_phrase_heads(caption, heads):
    assert phrase_heads(caption_words(caption)) == heads


def test_singular():
    known = {'horse', 'bus', 'cat'}
    assert singular('men', known) == 'man'
    assert singular('veggies', known) == 'veggy'  # as WordNet: "veggy"
    assert singular('sunglasses', known) == 'sunglass'
    assert singular('benches', known) == 'bench'
    assert singular('horses', known) == 'horse'
    assert singular('buses', known) == 'bus'
    assert singular('cats', known) == 'cat'
    assert singular('dogs', known) == 'dogs'  # singular never seen
    assert singular('glass', known) == 'glass'
    assert singular('pants', {'pant'}) == 'pants'


def test_count_and_rank():
    captions = ['a dog on a bed', 'the dogs on the beds', 'a cat',
                'two cats near a dog', 'an apple']
    assert dict(count_nouns(captions)) == {'dog': 3, 'bed': 2, 'cat': 2,
                                           'apple': 1}
    # By count, ties alphabetically; top_k and min_count cut.
    assert frequent_nouns(captions, top_k=3) == [('dog', 3), ('bed', 2),
                                                 ('cat', 2)]
    assert frequent_nouns(captions, top_k=0, min_count=2) == [
        ('dog', 3), ('bed', 2), ('cat', 2)]
