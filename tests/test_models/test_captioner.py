"""PCMCaptioner: the three forward modes and its configuration errors."""
import pytest
import torch
from mmpretrain.structures import DataSample

from pcm_plugin.models.tokenizer import decode_ids
from pcm_plugin.registry import MODELS
from tests.helpers import CAPTIONS, tiny_captioner_cfg


@pytest.fixture
def cfg(tiny_clip, tiny_bank, tiny_tokenizer):
    return tiny_captioner_cfg(tiny_clip, tiny_bank, tiny_tokenizer,
                              beam_size=2)


def batch(n=3, with_cos=True):
    torch.manual_seed(0)
    inputs = dict(patch_feats=torch.randn(n, 49, 48),
                  global_feat=torch.randn(n, 32))
    samples = []
    for i in range(n):
        sample = DataSample(metainfo=dict(image_id=str(i)))
        sample.gt_caption = CAPTIONS[i]
        if with_cos:
            sample.set_metainfo(dict(clip_cos=0.1 * (i + 1)))
        samples.append(sample)
    return inputs, samples


def test_loss_mode_matches_manual_loss(cfg):
    from pcm_plugin.models.tokenizer import encode_captions
    model = MODELS.build(cfg).eval()  # eval: no dropout, no noise
    inputs, samples = batch()
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_ce', 'clip_cos'}
    assert losses['clip_cos'].item() == pytest.approx(0.2)
    memory, mask = model.encode(inputs)
    ids, targets, input_mask = encode_captions(
        model.tokenizer, [s.gt_caption for s in samples], max_len=8)
    logits = model.decoder(ids, memory, mask, input_mask)
    expected = model.loss_module(logits, targets, torch.tensor([.1, .2, .3]))
    torch.testing.assert_close(losses['loss_ce'], expected)
    losses['loss_ce'].backward()
    assert model.mixup.patch_proj.weight.grad is not None


def test_predict_and_tensor_modes(cfg):
    model = MODELS.build(cfg).eval()
    inputs, samples = batch()
    out = model(inputs, samples, mode='predict')
    assert out is samples
    vocab = set(model.tokenizer.get_vocab())
    for sample in out:
        assert isinstance(sample.pred_caption, str)
        assert set(sample.pred_caption.split()) <= vocab
    fresh = model(inputs, mode='predict')
    assert [s.pred_caption for s in fresh] == [s.pred_caption for s in out]
    memory = model(inputs, mode='tensor')
    assert memory.shape == (3, 1 + 2 * 49, 32)
    with pytest.raises(RuntimeError, match='Invalid mode'):
        model(inputs, mode='bogus')


def test_unweighted_loss_ignores_missing_cosines(cfg):
    inputs, samples = batch(with_cos=False)
    model = MODELS.build(dict(cfg, clip_weighted=False))
    assert set(model(inputs, samples, mode='loss')) == {'loss_ce'}
    weighted = MODELS.build(cfg)
    with pytest.raises(ValueError, match='no CLIP image-caption cosine'):
        weighted(inputs, samples, mode='loss')


def test_configuration_errors(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match='tools/build_vocab.py'):
        MODELS.build(dict(cfg, tokenizer=str(tmp_path / 'tokenizer.json')))
    with pytest.raises(KeyError, match="did you mean.*VisualSemanticEncoder"):
        MODELS.build(dict(cfg, encoder=dict(type='VisualSemanticEncodr')))
    with pytest.raises(ValueError, match='vocab_size=7'):
        MODELS.build(dict(cfg, decoder=dict(cfg['decoder'], vocab_size=7)))
    # A misspelled keyword: one line, not a TypeError from deep inside.
    with pytest.raises(ValueError, match=(
            r"^model.mixup \(PCMMixup\): unknown argument 'topk' \(did you "
            r"mean 'top_k'.*\)")):
        MODELS.build(dict(cfg, mixup=dict(cfg['mixup'], topk=3)))
    model = MODELS.build(cfg)
    with pytest.raises(KeyError, match='LoadCLIPFeatures'):
        model(dict(patch_feats=torch.randn(1, 49, 48)), mode='tensor')


@pytest.mark.parametrize('component, key, value, message', [
    ('decoder', 'max_len', 12, 'decoder.max_len=12 disagrees with '
     'model.max_len'),
    ('decoder', 'eos_id', 3, 'decoder.eos_id=3 disagrees'),
    ('decoder', 'embed_dim', 64, 'model widths disagree'),
    ('encoder', 'embed_dim', 64, 'model widths disagree'),
])
def test_settings_given_twice_must_agree(cfg, component, key, value,
                                         message):
    part = dict(cfg[component], **{key: value})
    if key == 'embed_dim':
        part['num_heads'] = 2
    with pytest.raises(ValueError, match=message):
        MODELS.build(dict(cfg, **{component: part}))


def test_decoder_takes_the_captioner_max_len(cfg):
    decoder = dict(cfg['decoder'])
    decoder.pop('max_len', None)
    model = MODELS.build(dict(cfg, max_len=5, decoder=decoder))
    assert model.decoder.max_len == model.max_len == 5


def test_bad_input_500_word_caption_is_clipped_like_a_short_one(cfg):
    """A runaway caption (e.g. a CSV quote swallowing rows) neither crashes
    nor dominates: it is cut at max_len like any other caption."""
    model = MODELS.build(cfg).eval()
    words = CAPTIONS[0].split()
    inputs, samples = batch()
    samples[1].gt_caption = ' '.join((words * 100)[:500])
    long = model(inputs, samples, mode='loss')['loss_ce']
    samples[1].gt_caption = ' '.join((words * 100)[:30])
    short = model(inputs, samples, mode='loss')['loss_ce']
    assert torch.isfinite(long)
    assert torch.equal(long, short)


def test_compile_layers_keeps_names_and_outputs(cfg):
    """``compile_layers``: every layer compiled in place, the state dict
    keys unchanged, loss and captions those of the eager model (dynamo's
    ``eager`` backend: the tracing without the slow CPU code generation)."""
    torch.manual_seed(0)
    eager = MODELS.build(cfg).eval()
    torch.manual_seed(0)
    compiled = MODELS.build(dict(
        cfg, compile_layers=dict(backend='eager'))).eval()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    layers = [*compiled.encoder.layers, *compiled.decoder.layers]
    assert all(layer._compiled_call_impl is not None for layer in layers)
    inputs, samples = batch()
    with torch.no_grad():
        torch.testing.assert_close(compiled(inputs, samples, mode='loss'),
                                   eager(inputs, samples, mode='loss'))
        assert compiled.generate(inputs) == eager.generate(inputs)


def test_captions_drop_the_masked_textual_tokens_before_the_encoder(cfg):
    """At test time the unselected textual tokens are masked: ``generate``
    drops them before the encoder (fewer positions), which leaves the
    memory of the visible ones and the captions as they were."""
    model = MODELS.build(cfg).eval()
    inputs, _ = batch()
    with torch.no_grad():
        memory, mask = model.encode(inputs)  # (B, 1 + 2N, d)
        kept, kept_mask = model.encode(inputs, drop_masked=True)
        assert memory.shape[1] == 1 + 2 * 49
        assert kept.shape[1] == int(mask.sum(1).max()) < memory.shape[1]
        for row in range(len(memory)):
            torch.testing.assert_close(kept[row][kept_mask[row]],
                                       memory[row][mask[row]], atol=1e-5,
                                       rtol=0)
        ids, _ = model.decoder.generate(memory, mask, max_len=8)
    assert model.generate(inputs) == decode_ids(model.tokenizer, ids)
