"""Concept encoding by prompt ensemble with a tiny random open_clip."""
import os.path as osp

import numpy as np
import pytest

from pcm_plugin.clip.clip_features import load_open_clip_text_model
from pcm_plugin.data_prep.concepts import (
    ENSEMBLE_TEMPLATES,
    encode_concepts,
    read_word_list,
    resolve_templates,
)

WORDS = ['dog', 'surfboard', 'pizza', 'traffic light', 'café']


def test_templates():
    # docs/method.md §2.5, ViECap's 7 templates, in order.
    assert resolve_templates('ensemble') == [
        'itap of a {}.', 'a bad photo of the {}.', 'a origami {}.',
        'a photo of the large {}.', 'a {} in a video game.',
        'art of the {}.', 'a photo of the small {}.']
    assert resolve_templates('single') == ['a photo of {}.']


def test_template_file(tmp_path):
    path = tmp_path / 't.txt'
    path.write_text('# mine\na picture of a {}.\n\n{} on a table\n')
    assert resolve_templates(str(path)) == ['a picture of a {}.',
                                            '{} on a table']
    path.write_text('a {}.\nno placeholder\n')
    with pytest.raises(ValueError, match=r't.txt:2: template'):
        resolve_templates(str(path))
    with pytest.raises(FileNotFoundError, match='not `ensemble`'):
        resolve_templates('ensembel')


def test_word_list_duplicate_names_line(tmp_path):
    path = tmp_path / 'w.txt'
    path.write_text('dog\ncat\n\ndog\n')
    with pytest.raises(ValueError, match=r"w.txt:4: duplicate concept word "
                       r"'dog' \(first on line 1\)"):
        read_word_list(str(path))


@pytest.fixture(scope='module')
def text_model(tiny_clip):
    name, ckpt = tiny_clip
    return load_open_clip_text_model(name, ckpt, osp.join(
        osp.dirname(ckpt), f'{name}.json'))


def manual_unit(model, tokenizer, prompts):
    import torch
    with torch.no_grad():
        emb = model.encode_text(tokenizer(prompts)).float()
    return (emb / emb.norm(dim=-1, keepdim=True)).numpy()


def test_ensemble_equals_manual_computation(text_model):
    model, tokenizer = text_model
    bank = encode_concepts(model, tokenizer, WORDS, ENSEMBLE_TEMPLATES,
                           batch_size=2)  # batches must not matter
    assert bank.shape == (5, 32) and bank.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1, atol=1e-6)
    per_template = [manual_unit(model, tokenizer, [t.format(w)
                                                   for w in WORDS])
                    for t in ENSEMBLE_TEMPLATES]
    mean = np.mean(per_template, axis=0)
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(bank, expected, atol=1e-6)
    # The ensemble is not just one of its templates.
    assert np.abs(bank - per_template[0]).max() > 1e-3


def test_single_template(text_model):
    model, tokenizer = text_model
    bank = encode_concepts(model, tokenizer, WORDS, ['a photo of {}.'])
    np.testing.assert_allclose(
        bank, manual_unit(model, tokenizer,
                          [f'a photo of {w}.' for w in WORDS]), atol=1e-6)


def test_loader_errors(tiny_clip, tmp_path):
    from pcm_plugin.testing import build_tiny_open_clip
    name, ckpt = tiny_clip
    config = osp.join(osp.dirname(ckpt), f'{name}.json')
    with pytest.raises(ValueError, match='registers model'):
        load_open_clip_text_model('ViT-B-32', ckpt, config)
    with pytest.raises(ValueError, match="unknown open_clip model 'nope'"):
        load_open_clip_text_model('nope', ckpt)
    with pytest.raises(FileNotFoundError, match='none.pt not found'):
        load_open_clip_text_model(name, str(tmp_path / 'none.pt'))
    # A checkpoint of another architecture.
    _, other = build_tiny_open_clip(str(tmp_path), 'pcm-tiny-vit-l14')
    with pytest.raises(ValueError, match=f'does not fit open_clip model '
                       f"'{name}'"):
        load_open_clip_text_model(name, other, config)
