"""CLIPWeightedCELoss against the docs/method.md §5 formula, by hand."""
import math

import numpy as np
import pytest
import torch

from pcm_plugin.models.losses.clip_weighted_ce import (
    CLIPWeightedCELoss,
    clip_weighted_ce,
)

PAD = -100
EPS = 0.1
ALPHA = 2.5
GAMMA = 2.0


def tiny_case():
    """B=3, T=3, V=5; sample 1 has one padding token.

    Cosines give alpha * cos = 0.5 (inside (0, 1)), 1.5 (above 1) and
    -0.25 (negative).
    """
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, 5, generator=gen, dtype=torch.float64)
    targets = torch.tensor([[1, 4, 0], [2, 0, PAD], [3, 3, 0]])
    clip_cos = torch.tensor([0.2, 0.6, -0.1], dtype=torch.float64)
    return logits, targets, clip_cos


def hand_loss(logits, targets, clip_cos, *, focal, weight_floor=0.0,
              eps=EPS, alpha=ALPHA, gamma=GAMMA):
    """The §5 formula with explicit loops over numpy float64 arrays."""
    z = np.asarray(logits, dtype=np.float64)
    num_samples, num_steps, num_words = z.shape
    focal_terms, weighted_terms, word_terms = [], [], []
    for b in range(num_samples):
        if clip_cos is None:
            weight = 1.0
        else:
            weight = min(1.0, alpha * float(clip_cos[b]))
            if weight_floor is not None:
                weight = max(weight, weight_floor)
        for t in range(num_steps):
            target = int(targets[b][t])
            if target == PAD:
                continue
            probs = np.exp(z[b, t]) / np.exp(z[b, t]).sum()
            kl = 0.0
            for v in range(num_words):
                q = 1 - eps if v == target else eps / (num_words - 1)
                if q > 0:  # 0 * log 0 = 0
                    kl += q * (math.log(q) - math.log(probs[v]))
            focal_factor = (1 - probs[target])**gamma
            focal_terms.append(focal_factor)
            weighted_terms.append(weight * kl)
            word_terms.append(focal_factor * weight * kl)
    if focal == 'batch':
        return np.mean(focal_terms) * np.mean(weighted_terms)
    if focal == 'word':
        return np.mean(word_terms)
    return np.mean(weighted_terms)


@pytest.mark.parametrize('focal', ['batch', 'word', 'none'])
@pytest.mark.parametrize('weight_floor', [0.0, None])
def test_matches_hand_formula(focal, weight_floor):
    logits, targets, clip_cos = tiny_case()
    loss = CLIPWeightedCELoss(focal=focal, weight_floor=weight_floor)(
        logits, targets, clip_cos)
    expected = hand_loss(logits, targets, clip_cos, focal=focal,
                         weight_floor=weight_floor)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_floor_changes_negative_cos_sample_only():
    logits, targets, clip_cos = tiny_case()
    floored = clip_weighted_ce(logits, targets, clip_cos, focal='none')
    eq11 = clip_weighted_ce(
        logits, targets, clip_cos, focal='none', weight_floor=None)
    # The floor only removes sample 2's negative contribution.
    assert eq11 < floored
    no_neg = clip_weighted_ce(logits[:2], targets[:2], clip_cos[:2],
                              focal='none', weight_floor=None)
    assert no_neg * 5 / 8 == pytest.approx(floored.item(), rel=1e-12)


def test_no_clip_cos_is_plain_label_smoothing():
    logits, targets, _ = tiny_case()
    loss = clip_weighted_ce(logits, targets, None, focal='none')
    expected = hand_loss(logits, targets, None, focal='none')
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # KL = label-smoothed CE minus the entropy of q.
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 5), targets.reshape(-1), ignore_index=PAD,
        label_smoothing=EPS * 5 / 4)  # torch spreads eps over all V words
    q = np.array([1 - EPS] + [EPS / 4] * 4)
    entropy = -(q * np.log(q)).sum()
    assert loss.item() == pytest.approx(ce.item() - entropy, rel=1e-12)


def test_zero_smoothing_is_cross_entropy_with_masked_words():
    logits, targets, _ = tiny_case()
    # A word with probability 0: q log q must not turn 0 * -inf into NaN.
    logits[..., 4] = -math.inf
    targets = targets.masked_fill(targets == 4, 1)
    loss = clip_weighted_ce(logits, targets, label_smoothing=0.0,
                            focal='none')
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 5), targets.reshape(-1), ignore_index=PAD)
    assert loss.item() == pytest.approx(ce.item(), rel=1e-12)


def hand_loss_torch(logits, targets, clip_cos, detach_focal=False):
    """'batch' mode with plain torch ops per token, for autograd."""
    focal_terms, weighted_terms = [], []
    for b in range(logits.size(0)):
        weight = (ALPHA * clip_cos[b]).clamp(0.0, 1.0)
        for t in range(logits.size(1)):
            target = int(targets[b, t])
            if target == PAD:
                continue
            log_p = torch.log_softmax(logits[b, t], dim=0)
            q = torch.full_like(log_p, EPS / 4)
            q[target] = 1 - EPS
            kl = (q * (q.log() - log_p)).sum()
            p_target = log_p[target].exp()
            if detach_focal:
                p_target = p_target.detach()
            focal_terms.append((1 - p_target)**GAMMA)
            weighted_terms.append(weight * kl)
    return (torch.stack(focal_terms).mean() *
            torch.stack(weighted_terms).mean())


def test_batch_focal_factor_backpropagates():
    logits, targets, clip_cos = tiny_case()
    logits.requires_grad_(True)
    grad = torch.autograd.grad(
        clip_weighted_ce(logits, targets, clip_cos), logits)[0]
    expected = torch.autograd.grad(
        hand_loss_torch(logits, targets, clip_cos), logits)[0]
    detached = torch.autograd.grad(
        hand_loss_torch(logits, targets, clip_cos, detach_focal=True),
        logits)[0]
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    # The focal term contributes a gradient of its own.
    assert (grad - detached).abs().max() > 1e-3


def test_gradcheck_all_modes():
    logits, targets, clip_cos = tiny_case()
    logits.requires_grad_(True)
    for focal in ('batch', 'word', 'none'):
        assert torch.autograd.gradcheck(
            lambda z: clip_weighted_ce(z, targets, clip_cos, focal=focal),
            (logits, ))


def test_padding_is_ignored():
    logits, targets, clip_cos = tiny_case()
    loss_fn = CLIPWeightedCELoss()
    reference = loss_fn(logits, targets, clip_cos)
    changed = logits.clone()
    changed[1, 2] = torch.tensor([1e4, -1e4, 3.0, 0.0, 7.0])  # the pad slot
    changed.requires_grad_(True)
    loss = loss_fn(changed, targets, clip_cos)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    loss.backward()
    assert torch.all(changed.grad[1, 2] == 0)
    assert changed.grad[1, 1].abs().sum() > 0
    # A custom ignore_index (e.g. the tokenizer's [PAD] = 2) works the same
    # once no real target uses that id.
    no_word_2 = targets.masked_fill(targets == 2, 1)
    pad_as_2 = no_word_2.masked_fill(no_word_2 == PAD, 2)
    custom = CLIPWeightedCELoss(ignore_index=2)(logits, pad_as_2, clip_cos)
    expected = hand_loss(logits, no_word_2, clip_cos, focal='batch')
    assert custom.item() == pytest.approx(expected, rel=1e-12)


def test_all_padding_gives_zero_with_grad():
    logits = torch.randn(2, 4, 6, requires_grad=True)
    targets = torch.full((2, 4), PAD)
    loss = CLIPWeightedCELoss()(logits, targets, torch.tensor([0.3, 0.1]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_loss_weight_and_half_precision():
    logits, targets, clip_cos = tiny_case()
    full = CLIPWeightedCELoss()(logits, targets, clip_cos)
    scaled = CLIPWeightedCELoss(loss_weight=0.5)(logits, targets, clip_cos)
    assert scaled.item() == pytest.approx(0.5 * full.item(), rel=1e-12)
    half = CLIPWeightedCELoss()(logits.half(), targets, clip_cos.half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=1e-2)


def test_bad_inputs_raise_clear_errors():
    logits, targets, clip_cos = tiny_case()
    with pytest.raises(ValueError, match='focal must be one of'):
        CLIPWeightedCELoss(focal='sent')
    with pytest.raises(ValueError, match=r'targets must be in \[0, 5\)'):
        clip_weighted_ce(logits, targets.masked_fill(targets == PAD, 7))
    with pytest.raises(ValueError, match='clip_cos must have shape'):
        clip_weighted_ce(logits, targets, clip_cos[:2])
    with pytest.raises(ValueError, match='NaN'):
        clip_weighted_ce(logits, targets, torch.tensor([0.1, math.nan, 0]))
    with pytest.raises(ValueError, match=r'expected logits \(B, T, V\)'):
        clip_weighted_ce(logits[0], targets[0])


@pytest.mark.parametrize('focal', ['batch', 'word', 'none'])
def test_excluded_rows_are_outside_the_vocabulary(focal):
    """With rows 1 and 2 excluded the loss is the V-2-word loss of the rest,
    whatever those rows hold (a converted official model's [UNK]/[PAD])."""
    logits, targets, clip_cos = tiny_case()  # V = 5 words
    wide = torch.cat([logits[..., :1], torch.tensor([-1e4, 50.0]).expand(
        3, 3, 2).double(), logits[..., 1:]], -1)  # rows 1, 2 inserted
    wide.requires_grad_(True)
    wide_targets = torch.where(targets > 0, targets + 2, targets)
    loss = CLIPWeightedCELoss(focal=focal, excluded_ids=(1, 2))(
        wide, wide_targets, clip_cos)
    expected = hand_loss(logits, targets, clip_cos, focal=focal)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert torch.all(wide.grad[..., 1:3] == 0)
    # Without exclusion the two rows take smoothing mass (and row 2 takes
    # probability): another, larger loss.
    included = CLIPWeightedCELoss(focal=focal)(wide, wide_targets, clip_cos)
    assert included.item() > expected + 1.0


def test_bad_input_excluded_ids():
    logits, targets, clip_cos = tiny_case()
    with pytest.raises(ValueError, match=r'targets include ids \[4\], which '
                       r'excluded_ids=\[4\] says are not words'):
        clip_weighted_ce(logits, targets, excluded_ids=(4,))
    with pytest.raises(ValueError, match=r'distinct ids in \[0, 5\)'):
        clip_weighted_ce(logits, targets, excluded_ids=(5,))
    with pytest.raises(ValueError, match='distinct'):
        clip_weighted_ce(logits, targets, excluded_ids=(4, 4))
    with pytest.raises(ValueError, match='>= 2 words besides'):
        clip_weighted_ce(logits, torch.zeros_like(targets),
                         excluded_ids=(1, 2, 3, 4))


def test_build_from_registry():
    from pcm_plugin.registry import MODELS
    loss_fn = MODELS.build(
        dict(type='CLIPWeightedCELoss', alpha=4.0, focal='word'))
    assert isinstance(loss_fn, CLIPWeightedCELoss)
    logits, targets, clip_cos = tiny_case()
    expected = hand_loss(logits, targets, clip_cos, focal='word', alpha=4.0)
    assert loss_fn(logits, targets, clip_cos).item() == pytest.approx(
        expected, rel=1e-12)
