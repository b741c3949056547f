"""PrefixLMCaptioner (CLIP-prefix GPT-2, ClipCap / ViECap) with PCMMixup,
VisualSemanticEncoder and CLIPWeightedCELoss switched on by config alone."""
import copy

import pytest
import torch
from mmpretrain.structures import DataSample

from pcm_plugin.models.tokenizer import decode_ids, encode_captions
from pcm_plugin.registry import MODELS
from tests.helpers import CAPTIONS, save_tiny_gpt2_folder
from tests.test_models.decoder_checks import (
    assert_large_beam_is_exhaustive,
    assert_search_matches_recomputation,
    greedy_by_recomputation,
    make_memory,
)

LM = dict(n_embd=24, n_layer=2, n_head=2, n_positions=48)


@pytest.fixture
def cfg(tiny_clip, tiny_bank, tiny_tokenizer):
    return dict(
        type='PrefixLMCaptioner', tokenizer=tiny_tokenizer, max_len=8,
        mixup=dict(type='PCMMixup', patch_dim=48, global_dim=32,
                   num_patches=49, embed_dim=32, concept_bank=tiny_bank,
                   clip_head=tiny_clip[1], top_k=3),
        encoder=dict(type='VisualSemanticEncoder', embed_dim=32,
                     num_layers=1, num_heads=2, ffn_dim=64),
        mapper=dict(type='PrefixMapper', embed_dim=32, out_dim=24,
                    prefix_len=4, num_layers=1, num_heads=2, ffn_dim=64),
        decoder=dict(type='GPT2PrefixDecoder', lm_config=LM, beam_size=2),
        loss=dict(type='CLIPWeightedCELoss', alpha=2.5))


def batch(n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = dict(patch_feats=torch.randn(n, 49, 48, generator=gen),
                  global_feat=torch.randn(n, 32, generator=gen))
    samples = []
    for i in range(n):
        sample = DataSample(metainfo=dict(image_id=str(i)))
        sample.gt_caption = CAPTIONS[i]
        sample.set_metainfo(dict(clip_cos=0.1 * (i + 1)))
        samples.append(sample)
    return inputs, samples


def build(cfg, seed=0, **changes):
    torch.manual_seed(seed)
    return MODELS.build(dict(copy.deepcopy(cfg), **changes))


def fit(model, inputs, samples, steps):
    """Adam steps on one batch; returns the first and the last loss."""
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model(inputs, samples, mode='loss')['loss_ce']
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def captured(model, names):
    """Record the inputs and outputs of sub-modules during a call."""
    calls = {}

    def hook(name):
        def record(module, args, output):
            calls[name] = (args, output)
        return record
    handles = [getattr(model, n).register_forward_hook(hook(n))
               for n in names]
    return calls, handles


@pytest.mark.parametrize('prompt', [None, 'there are {} in the image'])
def test_components_inside_equal_the_components_alone(cfg, prompt):
    """PCMMixup, VisualSemanticEncoder and CLIPWeightedCELoss give inside
    the prefix captioner exactly what they give alone, built from the same
    config with the same weights; the loss is theirs on the LM's logits."""
    model = build(cfg, entity_prompt=prompt).eval()
    inputs, samples = batch()
    calls, handles = captured(model, ['mixup', 'encoder', 'loss_module'])
    losses = model(inputs, samples, mode='loss')
    for h in handles:
        h.remove()
    alone = {}
    for name, key in (('mixup', 'mixup'), ('encoder', 'encoder'),
                      ('loss_module', 'loss')):
        alone[name] = MODELS.build(cfg[key]).eval()
        alone[name].load_state_dict(getattr(model, name).state_dict())
    with torch.no_grad():
        mix = alone['mixup'](inputs['patch_feats'], inputs['global_feat'])
        for k in ('tokens', 'token_mask', 'replace_mask', 'concept_idx'):
            assert torch.equal(mix[k], calls['mixup'][1][k]), k
        memory = alone['encoder'](mix['tokens'], mix['token_mask'])
        assert torch.equal(memory, calls['encoder'][1])
        prefix, mask = model.encode(inputs)
        ids, targets, input_mask = encode_captions(
            model.tokenizer, [s.gt_caption for s in samples], max_len=8)
        logits = model.decoder(ids, prefix, mask, input_mask)
        cos = torch.tensor([.1, .2, .3])
        expected = alone['loss_module'](logits, targets, cos)
    assert torch.equal(calls['loss_module'][0][0], logits)
    assert torch.equal(losses['loss_ce'], expected)
    assert losses['clip_cos'].item() == pytest.approx(0.2)
    assert prefix.shape[1] == 4 + (0 if prompt is None else mask.size(1) - 4)


def test_training_lowers_the_loss_and_every_part_learns(cfg):
    model = build(cfg).train()
    inputs, samples = batch(n=4)
    model(inputs, samples, mode='loss')['loss_ce'].backward()
    for part in ('mixup', 'encoder', 'mapper', 'decoder'):
        grads = [p.grad for p in getattr(model, part).parameters()
                 if p.requires_grad]
        assert grads and all(g is not None for g in grads), part
    first, last = fit(model, inputs, samples, 40)
    assert last < 0.3 * first, (first, last)


def test_predict_tensor_modes_and_learned_captions(cfg):
    """After fitting 4 captions (dropout on), greedy and beam decoding
    return them."""
    model = build(cfg, max_len=8, mixup=dict(cfg['mixup'], dropout=0.1))
    inputs, samples = batch(n=4)
    fit(model, inputs, samples, 300)
    model.eval()
    out = model(inputs, samples, mode='predict')
    assert out is samples
    assert [s.pred_caption for s in out] == CAPTIONS[:4]
    assert model.generate(inputs, beam_size=1) == CAPTIONS[:4]
    prefix = model(inputs, mode='tensor')
    assert prefix.shape == (4, 4, 24)


class TestDecoding:
    """Cached = uncached, beam = exhaustive, for the GPT-2 decoder."""

    @staticmethod
    def decoder(seed=0, vocab=7, sharpen=3.0, attn_impl='eager'):
        torch.manual_seed(seed)
        decoder = MODELS.build(dict(type='GPT2PrefixDecoder', vocab_size=vocab,
                                    lm_config=dict(LM, n_embd=16),
                                    attn_impl=attn_impl))
        with torch.no_grad():  # peaked next-word laws (tied to wte)
            decoder.lm.transformer.wte.weight.mul_(sharpen)
        return decoder.eval()

    @pytest.mark.parametrize('attn_impl', ['eager', 'sdpa'])
    def test_cached_steps_match_full_forward_with_prefix_holes(self,
                                                               attn_impl):
        decoder = self.decoder(seed=1, vocab=9, attn_impl=attn_impl)
        assert decoder.lm.config._attn_implementation == attn_impl
        memory, mask = make_memory(seed=2, batch=3, length=6)
        mask[0, 2] = False  # a hole in the middle (hard-prompt padding)
        ids = torch.randint(0, 9, (3, 6), generator=torch.Generator()
                            .manual_seed(3))  # (B, T)
        ids[:, 0] = decoder.bos_id
        with torch.no_grad():
            full = decoder(ids, memory, mask)  # (B, T, V)
            cache = decoder.init_cache(memory, mask)
            for t in range(ids.size(1)):
                logits = decoder.step(ids[:, t], cache)
                torch.testing.assert_close(logits, full[:, t], atol=1e-5,
                                           rtol=0)
            # Masked prefix positions are the model without them.
            kept = mask[1]
            alone = decoder(ids[1:2], memory[1:2, kept], mask[1:2, kept])
        torch.testing.assert_close(alone, full[1:2], atol=1e-5, rtol=0)

    @pytest.mark.parametrize('seed', [0, 1, 2])
    def test_large_beam_equals_exhaustive_search(self, seed):
        decoder = self.decoder(seed=seed, vocab=4)
        memory, mask = make_memory(seed=10 + seed, batch=3)
        assert_large_beam_is_exhaustive(decoder, memory, mask, max_len=4)

    @pytest.mark.parametrize('seed', [0, 1, 2])
    def test_greedy_and_beam_against_recomputation(self, seed):
        decoder = self.decoder(seed=seed)
        memory, mask = make_memory(seed=20 + seed, batch=4)
        assert_search_matches_recomputation(decoder, memory, mask,
                                            max_len=6)
        beam_ids, _ = decoder.generate(memory, mask, beam_size=3, max_len=6)
        for b in range(4):  # a batch decodes as its samples one by one
            one_ids, _ = decoder.generate(memory[b:b + 1], mask[b:b + 1],
                                          beam_size=3, max_len=6)
            assert one_ids[0].tolist() == beam_ids[b].tolist()


def test_captioner_greedy_equals_recomputation_with_entity_prompt(cfg):
    """Through the whole captioner (drop_masked prefix, hard prompts of
    different lengths): cached greedy = a full forward per step."""
    model = build(cfg, entity_prompt='{} here', max_len=6).eval()
    inputs, _ = batch()
    with torch.no_grad():
        prefix, mask = model.encode(inputs)
        full_prefix, full_mask = model.encode(inputs, drop_masked=True)
        torch.testing.assert_close(full_prefix, prefix, atol=1e-5, rtol=0)
        ids, _ = model.decoder.generate(prefix, mask, beam_size=1,
                                        max_len=6)
        for b in range(3):
            seq, _ = greedy_by_recomputation(
                model.decoder, prefix[b:b + 1], mask[b:b + 1], 6)
            assert ids[b].tolist() == seq
    assert model.generate(inputs, beam_size=1) == decode_ids(model.tokenizer,
                                                             ids)


def test_entity_prompt_names_the_retrieved_concepts(cfg):
    model = build(cfg, entity_prompt='there are {} in the image',
                  entity_drop=0.5).eval()
    inputs, _ = batch()
    idx = model.embed(inputs)['concept_idx']  # (B, K)
    words = model.mixup.concept_words
    texts = model.prompt_texts(idx)  # eval: nothing dropped
    assert texts == ['there are ' + ', '.join(words[i] for i in row) +
                     ' in the image' for row in idx.tolist()]
    ids, mask = model.prompt_ids(idx)
    row = model.tokenizer(texts[0], add_special_tokens=False)['input_ids']
    assert ids[0, :len(row)].tolist() == row and bool(mask[0].all())
    model.train()
    torch.manual_seed(0)
    dropped = model.prompt_texts(idx.repeat(20, 1))
    assert min(len(t.split(',')) for t in dropped) < 3


def test_base_variant_and_configuration_errors(cfg, tmp_path):
    base = build(cfg, clip_weighted=False, encoder=None,
                 mixup=dict(cfg['mixup'], mode='none'))
    assert base.encoder is None and base.mixup.text_proj is None
    inputs, samples = batch()
    assert set(base(inputs, samples, mode='loss')) == {'loss_ce'}
    with pytest.raises(ValueError, match='entity_prompt needs the concepts'):
        build(cfg, entity_prompt='{}', mixup=dict(cfg['mixup'], mode='none'))
    with pytest.raises(ValueError, match="one '{}'"):
        build(cfg, entity_prompt='no slot')
    with pytest.raises(ValueError, match=r'mapper.out_dim=32 disagrees with '
                       r"the language model's n_embd \(24\)"):
        build(cfg, mapper=dict(cfg['mapper'], out_dim=32))
    with pytest.raises(ValueError, match=r'mapper.embed_dim=16 disagrees'):
        build(cfg, mapper=dict(cfg['mapper'], embed_dim=16))
    with pytest.raises(FileNotFoundError, match='has no config.json'):
        build(cfg, decoder=dict(cfg['decoder'], lm_path=str(tmp_path)))
    with pytest.raises(ValueError, match='n_positions=48'):
        build(cfg, max_len=60).generate(inputs)


def test_gpt2_folder_with_its_own_bpe_tokenizer(cfg, tmp_path):
    """A user's local GPT-2 folder (here a tiny random one with a BPE
    tokenizer, saved by transformers as a download would be): the
    captioner loads weights and tokenizer from it offline, keeps the
    weights through mmengine's init_weights, trains and decodes."""
    from transformers import GPT2LMHeadModel
    folder = save_tiny_gpt2_folder(str(tmp_path / 'gpt2'), lm=LM)
    eos = 300  # after the 300 BPE entries, as GPT-2's 50256
    model = build(cfg, tokenizer=folder, max_len=12,  # in BPE pieces
                  decoder=dict(type='GPT2PrefixDecoder', lm_path=folder))
    saved = GPT2LMHeadModel.from_pretrained(folder).state_dict()
    model.init_weights()
    for key, value in saved.items():
        assert torch.equal(model.decoder.lm.state_dict()[key], value), key
    assert model.decoder.eos_id == model.decoder.bos_id == eos
    inputs, samples = batch(n=2)
    fit(model, inputs, samples, 120)
    assert model.eval().generate(inputs) == CAPTIONS[:2]


@pytest.mark.parametrize('train', [True, False])
def test_threshold_one_is_the_base_model_with_concepts(cfg, train):
    """The Base configs' ``threshold=1.0``: no patch mixed, no textual
    token visible, so the visible tokens are ``mode='none'``'s (same
    weights), while the top-K concepts are still retrieved."""
    kwargs = dict(cfg['mixup'], dropout=0.0, noise_var=0.0)
    kwargs.pop('type')
    from pcm_plugin.models import PCMMixup
    gated = PCMMixup(**dict(kwargs, threshold=1.0)).train(train)
    plain = PCMMixup(**dict(kwargs, mode='none')).train(train)
    plain.load_state_dict(gated.state_dict(), strict=False)
    inputs, _ = batch()
    with torch.no_grad():
        out = gated(inputs['patch_feats'], inputs['global_feat'])
        ref = plain(inputs['patch_feats'], inputs['global_feat'])
    assert not out['replace_mask'].any()
    assert out['concept_idx'].shape == (3, 3)
    visible = out['tokens'][out['token_mask']].view(3, 50, -1)
    torch.testing.assert_close(visible, ref['tokens'], atol=0, rtol=0)


def test_bad_input_missing_gpt2_folder_names_both_kinds(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=(
            r'tools/build_vocab.py.*tokenizer_config.json, e.g. a local '
            r'GPT-2 download')):
        build(cfg, tokenizer=str(tmp_path / 'gpt2'))


# ---------------------------------------------------------------- runner
def toy_prefix_config(world, work_dir, *, max_epochs=2):
    """The toy PCM-Net run (``toy_config``) with the prefix captioner in
    place of PCMCaptioner: the same mix-up, loss, data and schedule."""
    from pcm_plugin.testing.toy_features import toy_config
    cfg = toy_config(world, work_dir, max_epochs=max_epochs)
    cfg.model = dict(
        type='PrefixLMCaptioner', tokenizer=world['tokenizer'], max_len=6,
        entity_prompt='{}', mixup=cfg.model.mixup, loss=cfg.model.loss,
        mapper=dict(type='PrefixMapper', embed_dim=64, out_dim=32,
                    prefix_len=4, num_layers=1, num_heads=2, ffn_dim=128),
        decoder=dict(type='GPT2PrefixDecoder', lm_config=dict(
            LM, n_embd=32), beam_size=2))
    return cfg


def test_resumed_run_equals_the_uninterrupted_one_bitwise(toy_world,
                                                          tmp_path):
    """Dropout (mix-up, mapper, GPT-2) and CapDec noise on, validation
    between the epochs: 1 epoch + resume = 2 epochs, bit for bit."""
    from tests.test_engine.test_exact_resume import (
        _train,
        assert_resume_is_exact,
    )

    def config(work_dir, epochs):
        cfg = toy_prefix_config(toy_world, str(tmp_path / work_dir),
                                max_epochs=epochs)
        cfg.model.mixup.update(dropout=0.3, noise_var=0.016)
        cfg.model.entity_drop = 0.3
        cfg.train_cfg.val_interval = 1
        cfg.default_hooks.checkpoint.update(save_best=None, interval=1)
        return cfg

    whole = assert_resume_is_exact(config)
    assert any(k.startswith('decoder.lm.') for k in whole)
    once = _train(config('once', 1))
    assert not all(torch.equal(once[k], whole[k]) for k in whole)


# Every per-rank random draw off (see test_train_test_tools.NO_RANDOMNESS).
PREFIX_NO_RANDOMNESS = [
    'model.mixup.dropout=0', 'model.mixup.noise_var=0',
    'model.mapper.attn_drop=0', 'model.mapper.hidden_drop=0',
    'model.decoder.lm_config.resid_pdrop=0',
    'model.decoder.lm_config.embd_pdrop=0',
    'model.decoder.lm_config.attn_pdrop=0', 'model.loss.focal=none',
    'default_hooks.checkpoint.save_best=None']


@pytest.mark.slow
# One epoch is 4 steps, inside the toy config's warm-up: NoamLR's warning is
# right, and beside this test's point.
@pytest.mark.filterwarnings('ignore:NoamLR stops updating:UserWarning')
def test_two_process_training_equals_one_process_with_the_same_batch(
        toy_world, tmp_path):
    """2 processes x batch 8 == 1 process x batch 16 (4 Adam steps),
    through tools/train.py and torchrun, to float32 round-off. Left out
    as in the PCMCaptioner test: key-projection biases (zero true
    gradient, Adam-amplified round-off), here also the key third of
    GPT-2's fused query/key/value bias."""
    from tests.test_tools.test_train_test_tools import (
        train_one_and_two_processes,
    )
    config = str(tmp_path / 'toy_prefix.py')
    toy_prefix_config(toy_world, str(tmp_path / 'work'),
                      max_epochs=1).dump(config)
    one, two = train_one_and_two_processes(config, PREFIX_NO_RANDOMNESS,
                                           tmp_path)
    width = 32

    def compared(state, key):
        value = state[key]
        if key.endswith('attn.c_attn.bias'):  # (3 * width,): q, k, v
            value = torch.cat([value[:width], value[2 * width:]])
        return value

    keys = [k for k in one['state_dict'] if not k.endswith('k_proj.bias')]
    assert len(keys) > 40 and any('c_attn' in k for k in keys)
    worst = max((compared(one['state_dict'], k) -
                 compared(two['state_dict'], k)).abs().max().item()
                for k in keys)
    assert worst < 1e-5, worst


@pytest.mark.parametrize('host, pcm', [
    ('configs/pcm_viecap_coco.py', 'configs/pcm_coco.py'),
    ('configs/pcm_viecap_coco_base.py', 'configs/pcm_coco.py'),
    ('projects/mini_world/configs/pcm_viecap_shapes.py',
     'projects/mini_world/configs/pcm_shapes.py'),
    ('projects/mini_world/configs/pcm_viecap_shapes_base.py',
     'projects/mini_world/configs/pcm_shapes.py')])
def test_configs_switch_the_components_on_by_keys_alone(host, pcm):
    """The prefix host's configs take PCMCaptioner's mix-up, loss and data
    as they are; a Base config differs by the ablation keys only."""
    import os.path as osp

    from mmengine.config import Config

    from tests.helpers import REPO_ROOT
    cfg = Config.fromfile(osp.join(REPO_ROOT, host))
    ref = Config.fromfile(osp.join(REPO_ROOT, pcm))
    assert cfg.model.type == 'PrefixLMCaptioner'
    assert cfg.model.decoder.type == 'GPT2PrefixDecoder'
    base = host.endswith('_base.py')
    mixup = dict(ref.model.mixup, threshold=1.0) if base else ref.model.mixup
    loss = dict(ref.model.loss, focal='none') if base else ref.model.loss
    assert cfg.model.mixup == mixup and cfg.model.loss == loss
    assert cfg.model.clip_weighted is not base
    assert cfg.train_dataloader == ref.train_dataloader
    if 'coco' in host:  # a pretrained GPT-2 and its own tokenizer
        assert cfg.model.tokenizer == cfg.model.decoder.lm_path
