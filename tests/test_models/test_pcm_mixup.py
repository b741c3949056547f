"""The registered PCMMixup module: token layouts, gradients, noise, the
concept bank, modes (its selection maths: test_mixup_selection.py)."""
import numpy as np
import pytest
import torch

from pcm_plugin.models import PCMMixup, salient_patch_mixup
from pcm_plugin.registry import MODELS
from tests.test_models.mixup_checks import tiny_features as features
from tests.test_models.mixup_checks import tiny_mixup_cfg


@pytest.fixture
def mixup_cfg(tiny_clip, tiny_bank):
    return tiny_mixup_cfg(tiny_clip, tiny_bank)


def expected_tokens(module, proj, positions, types):
    """Embedding pipeline of docs/method.md §3.5: ReLU(proj+pos+type)->LN."""
    return module.norm(
        torch.relu(proj + positions + module.type_embed.weight[types]))


def test_train_layout_replaces_selected_patches(mixup_cfg):
    module = MODELS.build(mixup_cfg).train()
    patches, global_feat = features()
    out = module(patches, global_feat)
    mask = out['replace_mask']
    assert out['tokens'].shape == (2, 50, 64)
    assert out['token_mask'].all() and out['token_mask'].shape == (2, 50)
    textual, ref_mask, _ = salient_patch_mixup(
        module.clip_head(patches), global_feat, module.concept_embeds,
        top_k=3, top_m=5)
    assert torch.equal(mask, ref_mask)
    pos = module.pos_embed[0]
    glob = module.global_proj(global_feat / global_feat.norm(dim=-1,
                                                              keepdim=True))
    for b in range(2):
        torch.testing.assert_close(
            out['tokens'][b, 0], expected_tokens(module, glob[b], pos[0], 0))
        for j in range(49):
            proj = (module.text_proj(textual[b, j]) if mask[b, j] else
                    module.patch_proj(patches[b, j]))
            torch.testing.assert_close(
                out['tokens'][b, j + 1],
                expected_tokens(module, proj, pos[j + 1], int(mask[b, j])))


def test_eval_layout_appends_textual_tokens(mixup_cfg):
    module = MODELS.build(mixup_cfg).eval()
    patches, global_feat = features()
    out = module(patches, global_feat)
    mask = out['replace_mask']
    assert out['tokens'].shape == (2, 99, 64)
    assert torch.equal(out['token_mask'][:, :50], torch.ones(2, 50).bool())
    assert torch.equal(out['token_mask'][:, 50:], mask)
    textual, _, _ = salient_patch_mixup(module.clip_head(patches),
                                        global_feat, module.concept_embeds,
                                        top_k=3, top_m=5)
    pos = module.pos_embed[0]
    for b in range(2):
        for j in range(49):
            # every visual patch is kept, type 0, at its own position
            torch.testing.assert_close(
                out['tokens'][b, 1 + j],
                expected_tokens(module, module.patch_proj(patches[b, j]),
                                pos[j + 1], 0))
            # textual token j shares patch j's position; type = mask_j
            torch.testing.assert_close(
                out['tokens'][b, 50 + j],
                expected_tokens(module, module.text_proj(textual[b, j]),
                                pos[j + 1], int(mask[b, j])))


@pytest.mark.parametrize('training', [True, False])
def test_zero_textual_keeps_the_selection_and_drops_the_content(
        mixup_cfg, training):
    torch.manual_seed(0)
    plain = MODELS.build(mixup_cfg).train(training)
    zeroed = MODELS.build(dict(mixup_cfg, zero_textual=True)).train(training)
    zeroed.load_state_dict(plain.state_dict())
    patches, global_feat = features()
    torch.manual_seed(1)  # the same CapDec noise and dropout in both
    out = plain(patches, global_feat)
    torch.manual_seed(1)
    out_zero = zeroed(patches, global_feat)
    mask = out['replace_mask']
    assert mask.any() and torch.equal(out_zero['replace_mask'], mask)
    assert torch.equal(out_zero['token_mask'], out['token_mask'])
    # A textual token is then the projection's bias alone: the projection's
    # weights no longer matter.
    with torch.no_grad():
        zeroed.text_proj.weight.normal_()
    torch.manual_seed(1)
    torch.testing.assert_close(zeroed(patches, global_feat)['tokens'],
                               out_zero['tokens'])
    # Training: the selected patches' slots; evaluation: all N appended
    # textual tokens (the unselected ones are masked from attention).
    textual_slots = (torch.cat([torch.zeros(2, 1).bool(), mask], 1)
                     if training else
                     torch.cat([torch.zeros(2, 50).bool(),
                                torch.ones(2, 49).bool()], 1))
    changed = (out_zero['tokens'] != out['tokens']).any(-1)  # (B, L)
    assert torch.equal(changed, textual_slots)


def test_gradients_reach_projections_not_clip_head(mixup_cfg):
    module = MODELS.build(mixup_cfg).train()
    out = module(*features())
    out['tokens'].pow(2).sum().backward()
    for name in ('patch_proj', 'text_proj', 'global_proj'):
        assert getattr(module, name).weight.grad.abs().sum() > 0, name
    assert module.pos_embed.grad.abs().sum() > 0
    assert module.type_embed.weight.grad[1].abs().sum() > 0
    for name, param in module.clip_head.named_parameters():
        assert not param.requires_grad and param.grad is None, name
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert not any(n.startswith('clip_head') for n in trainable)


def test_noise_only_in_training_and_not_in_retrieval(mixup_cfg):
    module = MODELS.build(dict(mixup_cfg, noise_var=0.016))
    patches, global_feat = features()
    module.train()
    torch.manual_seed(0)
    a = module(patches, global_feat)
    torch.manual_seed(1)
    b = module(patches, global_feat)
    assert not torch.allclose(a['tokens'][:, 0], b['tokens'][:, 0])
    torch.testing.assert_close(a['tokens'][:, 1:], b['tokens'][:, 1:])
    assert torch.equal(a['concept_idx'], b['concept_idx'])
    module.eval()
    c, d = module(patches, global_feat), module(patches, global_feat)
    torch.testing.assert_close(c['tokens'], d['tokens'])
    assert torch.equal(c['concept_idx'], a['concept_idx'])


def test_concept_bank_is_swappable_and_not_saved(mixup_cfg, tmp_path):
    from pcm_plugin.models import save_concept_bank
    module = MODELS.build(mixup_cfg).eval()
    state = module.state_dict()
    assert 'concept_embeds' not in state
    assert 'clip_head.proj' in state and 'clip_head.ln_post.weight' in state
    patches, global_feat = features()
    # A bank whose word 'target' is the image's own direction: retrieved 1st.
    rows = np.eye(32, dtype=np.float32)[:5]
    rows[0] = (global_feat[0] / global_feat[0].norm()).numpy()
    path = str(tmp_path / 'swap.npz')
    save_concept_bank(path, ['target', 'b', 'c', 'd', 'e'], rows)
    module.set_concept_bank(path)
    assert module.concept_words[0] == 'target'
    assert module(patches, global_feat)['concept_idx'][0, 0] == 0


def test_mode_none_and_random(mixup_cfg):
    base = MODELS.build(dict(mixup_cfg, mode='none', concept_bank=None,
                             clip_head=None)).eval()
    out = base(*features())
    assert out['tokens'].shape == (2, 50, 64) and out['token_mask'].all()
    rand = MODELS.build(dict(mixup_cfg, mode='random', random_prob=0.5))
    rand.eval()
    out = rand(*features())
    assert out['tokens'].shape == (2, 99, 64) and out['token_mask'].all()
    rand.train()
    torch.manual_seed(0)
    frac = rand(*features(batch=64))['replace_mask'].float().mean()
    assert 0.4 < float(frac) < 0.6


def test_clear_errors(mixup_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match='build_concepts.py'):
        MODELS.build(dict(mixup_cfg, concept_bank=str(tmp_path / 'no.npz')))
    with pytest.raises(FileNotFoundError, match='CLIP head weights'):
        MODELS.build(dict(mixup_cfg, clip_head=str(tmp_path / 'no.pt')))
    with pytest.raises(ValueError, match='needs `clip_head`'):
        MODELS.build(dict(mixup_cfg, clip_head=None))
    with pytest.raises(ValueError, match='global_dim is 32'):
        MODELS.build(dict(mixup_cfg, global_dim=32)).set_concept_bank(
            (['a'] * 1, np.ones((1, 16), dtype=np.float32)))
    with pytest.raises(ValueError, match='proj has shape'):
        MODELS.build(dict(mixup_cfg, global_dim=64))
    module = MODELS.build(mixup_cfg)
    with pytest.raises(ValueError, match='different CLIP backbones'):
        module(torch.randn(1, 64, 48), torch.randn(1, 32))
    with pytest.raises(ValueError, match='mode must be one of'):
        PCMMixup(patch_dim=4, global_dim=4, num_patches=2, mode='all')


@pytest.mark.parametrize('mode', ['top', 'random', 'none'])
def test_every_trainable_parameter_is_used_in_training(mixup_cfg, mode):
    """DDP with find_unused_parameters=False needs a gradient for every
    trainable parameter; mode 'none' builds no text projection at all."""
    cfg = dict(mixup_cfg, mode=mode)
    if mode == 'none':
        cfg.update(concept_bank=None, clip_head=None)
    module = MODELS.build(cfg).train()
    module(*features(batch=4))['tokens'].pow(2).sum().backward()
    unused = [n for n, p in module.named_parameters()
              if p.requires_grad and p.grad is None]
    assert unused == []
    assert (module.text_proj is None) == (mode == 'none')


def test_base_and_mixup_models_share_initial_weights(mixup_cfg):
    """Same seed, with and without the mix-up: every parameter Base has is
    equal, and the global RNG is where Base leaves it (paired ablations)."""
    torch.manual_seed(3)
    pcm = MODELS.build(mixup_cfg)
    after_pcm = torch.rand(1)
    torch.manual_seed(3)
    base = MODELS.build(dict(mixup_cfg, mode='none', concept_bank=None,
                             clip_head=None))
    assert torch.equal(torch.rand(1), after_pcm)
    pcm_state = pcm.state_dict()
    for name, value in base.state_dict().items():
        assert torch.equal(value, pcm_state[name]), name
    # The text projection is not a copy of another projection.
    assert not torch.equal(pcm.text_proj.weight, pcm.global_proj.weight)
