"""Vocabulary building, min-count, coverage and the tokenizer round trip."""
import pytest

from pcm_plugin.data_prep.vocab import build_vocab, token_coverage

# Normalised counts: a 7, dog 3, cat 2, bird 1 (case and punctuation fold).
CORPUS = ['A dog.', 'a DOG, a cat!', 'a dog; a cat', 'a bird? a']


def vocab_words(tokenizer):
    vocab = tokenizer.get_vocab()
    return sorted((w for w in vocab if not w.startswith('[')),
                  key=vocab.get)


def test_min_count_exact(tmp_path):
    out = str(tmp_path / 'tokenizer.json')
    tokenizer, counts = build_vocab(CORPUS, out, min_count=2)
    assert dict(counts) == {'a': 7, 'dog': 3, 'cat': 2, 'bird': 1}
    assert tokenizer.get_vocab() == {'[EOS]': 0, '[UNK]': 1, '[PAD]': 2,
                                     'a': 3, 'dog': 4, 'cat': 5}
    assert vocab_words(build_vocab(CORPUS, out, min_count=3)[0]) == \
        ['a', 'dog']
    assert vocab_words(build_vocab(CORPUS, out, min_count=1)[0]) == \
        ['a', 'dog', 'cat', 'bird']
    assert vocab_words(build_vocab(CORPUS, out, min_count=1,
                                   max_words=2)[0]) == ['a', 'dog']
    with pytest.raises(ValueError, match='min_count'):
        build_vocab(CORPUS, out, min_count=0)


def test_round_trip_through_transformers_loader(tmp_path):
    from pcm_plugin.models.tokenizer import (
        EOS_ID,
        UNK_ID,
        decode_ids,
        encode_captions,
        load_caption_tokenizer,
    )
    out = str(tmp_path / 'vocab' / 'tokenizer.json')
    build_vocab(CORPUS, out, min_count=2)
    tokenizer = load_caption_tokenizer(out)
    ids = tokenizer('A cat, a DOG and a bird!',
                    add_special_tokens=False)['input_ids']
    assert ids == [3, 5, 3, 4, UNK_ID, 3, UNK_ID]
    assert tokenizer.decode([3, 5, 3, 4]) == 'a cat a dog'
    input_ids, targets, _ = encode_captions(tokenizer, ['a dog'])
    assert input_ids.tolist() == [[EOS_ID, 3, 4]]
    assert targets.tolist() == [[3, 4, EOS_ID]]
    assert decode_ids(tokenizer, targets) == ['a dog']


def test_token_coverage_exact(tmp_path):
    tokenizer, _ = build_vocab(CORPUS, str(tmp_path / 't.json'), min_count=2)
    cov = token_coverage(tokenizer, ['A dog and a bird.', 'a cat'])
    assert (cov.num_tokens, cov.num_unk, cov.num_types,
            cov.num_unk_types) == (7, 2, 5, 2)
    assert cov.token_coverage == pytest.approx(5 / 7)
    assert cov.type_coverage == pytest.approx(3 / 5)
    assert token_coverage(tokenizer, []).token_coverage == 1.0


@pytest.mark.parametrize('captions', [[], ['', '...', '!']])
def test_bad_input_no_words_is_refused_and_nothing_written(tmp_path,
                                                           captions):
    out = tmp_path / 'tokenizer.json'
    with pytest.raises(ValueError, match='no words in the training captions'):
        build_vocab(captions, str(out))
    assert not out.exists()


def test_bad_input_min_count_no_word_reaches_is_refused(tmp_path):
    out = tmp_path / 'tokenizer.json'
    with pytest.raises(ValueError) as err:
        build_vocab(CORPUS, str(out), min_count=8)
    assert str(err.value) == (
        "min_count 8 keeps no word: the training captions hold 4 distinct "
        "words, the most frequent ('a') seen 7 times, so the vocabulary "
        'would hold the special tokens only; pass --min-count 7 or lower')
    assert not out.exists()
    tokenizer, _ = build_vocab(CORPUS, str(out), min_count=7)  # the edge
    assert vocab_words(tokenizer) == ['a']


def test_bad_input_negative_max_words_is_refused(tmp_path):
    out = tmp_path / 'tokenizer.json'
    with pytest.raises(ValueError, match='max_words must be >= 0 '
                       r'\(0: no cap\), got -1'):
        build_vocab(CORPUS, str(out), max_words=-1)
    assert not out.exists()
