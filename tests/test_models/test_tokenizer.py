"""encode_captions: clipping to max_len, EOS, padding and the input mask."""
from pcm_plugin.data_prep.vocab import build_vocab
from pcm_plugin.models.tokenizer import (
    EOS_ID,
    PAD_ID,
    decode_ids,
    encode_captions,
    load_caption_tokenizer,
)


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
    import pytest
    path = tmp_path / 'tokenizer.json'
    path.write_text('[EOS] [UNK] [PAD] a b c')
    with pytest.raises(ValueError, match=r'tokenizer.json is not a '
                       r'tokenizer.json .*build_vocab.py'):
        load_caption_tokenizer(str(path))
