"""Releases of a PrefixLMCaptioner built on a user's GPT-2 folder: the
folder's own BPE tokenizer travels with both release forms, its model
weights once (in the release's weights), its architecture as data.

The GPT-2 folder is moved away once the releases are written and the
releases are moved to another folder: they are loaded with nothing but
themselves.
"""
import json
import os
import os.path as osp
import shutil

import pytest
import torch
from safetensors import safe_open

from tests.helpers import CAPTIONS, call_tool, save_tiny_gpt2_folder
from tests.test_models.test_prefix_captioner import (
    LM,
    fit,
    toy_prefix_config,
)

FORMS = ['pcm-bpe', 'pcm-bpe.safetensors']
EOS = 300  # the tiny GPT-2's <|endoftext|> (tests.helpers)


@pytest.fixture(scope='module')
def published(toy_world, tmp_path_factory):
    """``dict(model, releases, gpt2, features, metrics)``: the reference
    model (fitted to :data:`CAPTIONS` on random features: an untrained
    one's captions are empty), its releases (both forms, moved), the
    GPT-2 folder it was built from (gone now), the features and the test
    tool's metrics of the training config and checkpoint."""
    from mmpretrain.structures import DataSample

    from pcm_plugin.apis import publish_model
    from pcm_plugin.datasets.feature_layout import fill_feature_layout
    from pcm_plugin.registry import MODELS
    root = tmp_path_factory.mktemp('bpe_release')
    gpt2 = save_tiny_gpt2_folder(str(root / 'user' / 'gpt2'),
                                 lm=dict(LM, n_embd=32))
    cfg = toy_prefix_config(toy_world, str(root / 'work'))
    cfg.model.update(tokenizer=gpt2, decoder=dict(
        type='GPT2PrefixDecoder', lm_path=gpt2, beam_size=2))
    fill_feature_layout(cfg)
    config = str(root / 'prefix_bpe.py')
    cfg.dump(config)
    mixup = cfg.model.mixup
    gen = torch.Generator().manual_seed(1)
    features = dict(
        patch_feats=torch.randn(4, mixup.num_patches, mixup.patch_dim,
                                generator=gen),
        global_feat=torch.randn(4, mixup.global_dim, generator=gen))
    samples = [DataSample(gt_caption=caption, metainfo=dict(clip_cos=0.3))
               for caption in CAPTIONS[:4]]
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    fit(model, features, samples, 30)
    model.eval()
    ckpt = str(root / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    metrics = root / 'metrics.json'
    call_tool('tools/test.py', [config, ckpt, '--out', metrics,
                                '--work-dir', root / 'test_ref'])
    releases = {}
    for form in FORMS:
        publish_model(config, ckpt, str(root / form))
        releases[form] = str(root / 'elsewhere' / form)
        shutil.move(str(root / form), releases[form])
    shutil.move(str(root / 'user'), str(root / 'user_gone'))
    return dict(model=model, releases=releases, gpt2=gpt2,
                features=features, metrics=json.loads(metrics.read_text()))


def _load(release):
    from pcm_plugin.apis.inferencer import build_captioner
    return build_captioner(release, None)[0]


@pytest.mark.parametrize('form', FORMS)
def test_release_rebuilds_every_tensor_and_the_bpe_tokenizer(published,
                                                             form):
    reference = published['model']
    model = _load(published['releases'][form])
    again, state = model.state_dict(), reference.state_dict()
    assert set(again) == set(state)
    for key, value in state.items():
        assert torch.equal(again[key], value), key
    assert type(model.tokenizer).__name__ == 'GPT2TokenizerFast'
    assert model.tokenizer.get_vocab() == reference.tokenizer.get_vocab()
    assert len(model.tokenizer) == 301
    assert model.tokenizer.eos_token_id == model.decoder.eos_id == \
        model.decoder.bos_id == EOS
    assert model.tokenizer.backend_tokenizer.to_str() == \
        reference.tokenizer.backend_tokenizer.to_str()
    assert model.mixup.concept_words == reference.mixup.concept_words


@pytest.mark.parametrize('form', FORMS)
@pytest.mark.parametrize('beam', [1, 2])
def test_release_captions_the_features_as_the_model(published, form, beam):
    """Greedy and beam search, through the entity prompt (the BPE
    tokenizer's ids of the retrieved concepts) and BPE decoding."""
    model = _load(published['releases'][form])
    features = published['features']
    with torch.no_grad():
        expected = published['model'].generate(features, beam_size=beam)
        captions = model.generate(features, beam_size=beam)
    assert captions == expected
    assert any(captions), 'all empty: the comparison would be weak'


@pytest.mark.parametrize('form', FORMS)
def test_test_tool_takes_the_release(published, form, tmp_path):
    out = tmp_path / 'metrics.json'
    call_tool('tools/test.py', [published['releases'][form], '--out', out,
                                '--work-dir', tmp_path / 'work'])
    assert json.loads(out.read_text()) == published['metrics']


def test_folder_release_holds_the_tokenizer_files_not_the_gpt2_folder(
        published):
    folder = published['releases']['pcm-bpe']
    with open(osp.join(folder, 'release.json')) as f:
        files = sorted(json.load(f)['files'])
    assert files == [
        'README.md', 'clip_head.safetensors', 'concept_bank.npz',
        'config.py', 'model.safetensors', 'tokenizer/special_tokens_map.json',
        'tokenizer/tokenizer.json', 'tokenizer/tokenizer_config.json']
    assert sorted(os.listdir(folder)) == sorted(
        {name.split('/')[0] for name in files} | {'release.json'})
    _assert_no_path_of(published['gpt2'], [
        open(osp.join(folder, name), encoding='utf-8').read()
        for name in files if not name.endswith(('.safetensors', '.npz'))])


def test_one_file_release_holds_the_tokenizer_files_as_tensors(published):
    path = published['releases']['pcm-bpe.safetensors']
    with safe_open(path, 'pt') as f:
        keys, meta = list(f.keys()), f.metadata()
        tokenizer = {k: bytes(f.get_tensor(k).tolist()).decode('utf-8')
                     for k in keys if k.startswith('tokenizer_')}
    assert sorted(tokenizer) == [
        'tokenizer_files.special_tokens_map.json',
        'tokenizer_files.tokenizer.json',
        'tokenizer_files.tokenizer_config.json']
    assert sorted(keys) == sorted(
        list(published['model'].state_dict()) + list(tokenizer)
        + ['mixup.concept_bank.embeds', 'mixup.concept_bank.words_json'])
    config = json.loads(meta['pcm_plugin.config.json'])
    assert config['model']['tokenizer'] == 'from_weights'
    decoder = config['model']['decoder']
    assert decoder['lm_path'] is None
    assert (decoder['bos_id'], decoder['eos_id']) == (EOS, EOS)
    assert {k: decoder['lm_config'][k] for k in LM} == dict(LM, n_embd=32)
    _assert_no_path_of(published['gpt2'],
                       list(meta.values()) + list(tokenizer.values()))


def _assert_no_path_of(gpt2, texts):
    """No text names the GPT-2 folder or the folder above it."""
    parent = osp.dirname(gpt2)
    for text in texts:
        assert parent not in text


def test_bad_input_tokenizer_file_names_must_be_plain(tmp_path):
    from pcm_plugin.models.tokenizer import tokenizer_from_files
    with pytest.raises(ValueError, match=r"plain file names, got "
                       r"\['../evil.json'\]"):
        tokenizer_from_files({'tokenizer_config.json': b'{}',
                              '../evil.json': b'{}'}, source='crafted')


def test_bad_input_a_tokenizer_class_of_its_own_is_refused(published,
                                                           tmp_path):
    """A tokenizer folder inside a one-file release that names its own
    tokenizer class (``auto_map``) would be code to run: refused, the
    code never runs."""
    from pcm_plugin.models.tokenizer import (
        tokenizer_files,
        tokenizer_from_files,
    )
    files = tokenizer_files(published['model'].tokenizer)
    config = json.loads(files['tokenizer_config.json'])
    config.update(tokenizer_class='EvilTokenizer',
                  auto_map={'AutoTokenizer': [None, 'evil.EvilTokenizer']})
    marker = tmp_path / 'ran'
    files.update({
        'tokenizer_config.json': json.dumps(config).encode(),
        'evil.py': f'open({str(marker)!r}, "w").close()\n'.encode()})
    with pytest.raises(ValueError, match='trust_remote_code'):
        tokenizer_from_files(files, source='crafted')
    assert not marker.exists()


def test_bad_input_decoder_eos_checked_against_the_carried_tokenizer(
        published, tmp_path):
    """A one-file release's tokenizer arrives with the weights: the
    decoder's end token is checked against its [EOS] then."""
    from safetensors.torch import load_file, save_file
    path = published['releases']['pcm-bpe.safetensors']
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    config = json.loads(meta['pcm_plugin.config.json'])
    config['model']['decoder']['eos_id'] = 5
    meta['pcm_plugin.config.json'] = json.dumps(config)
    edited = str(tmp_path / 'edited.safetensors')
    save_file(load_file(path), edited, metadata=meta)
    with pytest.raises(ValueError, match=r"model.decoder.eos_id=5 disagrees "
                       r"with the tokenizer's \[EOS\] id 300"):
        _load(edited)
