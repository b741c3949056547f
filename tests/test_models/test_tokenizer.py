"""encode_captions: clipping to max_len, EOS, padding and the input mask;
an official vocabulary round-trips."""
import pytest
import torch

from pcm_plugin.data_prep.vocab import build_vocab
from pcm_plugin.models.tokenizer import (
    EOS_ID,
    PAD_ID,
    UNK_ID,
    decode_ids,
    encode_captions,
    load_caption_tokenizer,
    save_tokenizer,
    tokenizer_from_official_words,
    tokenizer_from_words,
)

# An X-modaler vocabulary.txt: official ids 1.., 'UNK' appended last.
OFFICIAL_WORDS = ['a', 'dog', 'on', 'the', 'grass', 'UNK']


def test_long_captions_are_clipped_and_still_end_with_eos(tmp_path):
    out = str(tmp_path / 'tokenizer.json')
    build_vocab(['a b c d e', 'a b c d e', 'a b'], out, min_count=1)
    tok = load_caption_tokenizer(out)
    a, b, c, d = (tok.convert_tokens_to_ids(w) for w in 'abcd')
    input_ids, targets, mask = encode_captions(
        tok, ['a b c d e', 'a b'], max_len=3)  # (2, 4)
    assert input_ids.tolist() == [[EOS_ID, a, b, c], [EOS_ID, a, b, PAD_ID]]
    assert targets.tolist() == [[a, b, c, EOS_ID], [a, b, EOS_ID, -100]]
    assert mask.tolist() == [[True] * 4, [True, True, True, False]]
    assert decode_ids(tok, targets) == ['a b c', 'a b']
    # max_len at or above the length changes nothing.
    full, _, _ = encode_captions(tok, ['a b c d'], max_len=4)
    assert full.tolist() == [[EOS_ID, a, b, c, d]]


def test_bad_input_non_json_tokenizer_names_the_file(tmp_path):
    path = tmp_path / 'tokenizer.json'
    path.write_text('[EOS] [UNK] [PAD] a b c')
    with pytest.raises(ValueError, match=r'tokenizer.json is not a '
                       r'tokenizer.json .*build_vocab.py'):
        load_caption_tokenizer(str(path))


def saved_and_loaded(tokenizer, tmp_path):
    path = str(tmp_path / 'tokenizer.json')
    save_tokenizer(tokenizer, path)
    return load_caption_tokenizer(path)


def test_official_vocabulary_round_trips(tmp_path):
    tok = saved_and_loaded(tokenizer_from_official_words(OFFICIAL_WORDS),
                           tmp_path)
    ids = list(range(3, 3 + len(OFFICIAL_WORDS)))  # official j is j + 2
    assert tok.convert_ids_to_tokens(ids) == OFFICIAL_WORDS
    # Each word, 'UNK' included, encodes back to its own row ...
    encoded = tok(OFFICIAL_WORDS, add_special_tokens=False)['input_ids']
    assert encoded == [[i] for i in ids]
    # ... and decodes as the official code writes it.
    assert decode_ids(tok, torch.tensor([ids + [EOS_ID]])) == \
        [' '.join(OFFICIAL_WORDS)]
    # Words outside the vocabulary become 'UNK', as in the official data.
    unk = ids[-1]
    _, targets, _ = encode_captions(tok, ['a zebra on the Ice'])
    assert targets[0].tolist() == [3, unk, 5, 6, unk, EOS_ID]
    assert UNK_ID not in targets[0].tolist()


def test_official_vocabulary_without_unk_keeps_unk_token(tmp_path):
    tok = saved_and_loaded(
        tokenizer_from_official_words(OFFICIAL_WORDS[:-1]), tmp_path)
    _, targets, _ = encode_captions(tok, ['a zebra'])
    assert targets[0].tolist() == [3, UNK_ID, EOS_ID]
    # A vocabulary of this plugin: upper-case 'UNK' is no special word.
    plain = saved_and_loaded(tokenizer_from_words(['a', 'b']), tmp_path)
    assert encode_captions(plain, ['a UNK zebra'])[1][0].tolist() == \
        [3, UNK_ID, UNK_ID, EOS_ID]


def test_bad_input_unknown_word_not_in_vocabulary():
    with pytest.raises(ValueError, match="unknown_word 'UNK' is not a "
                       'word of the vocabulary'):
        tokenizer_from_words(['a', 'b'], unknown_word='UNK')
