"""The mix-up's selection maths (mixup_selection.py) on hand-built cases
and against a loop-by-loop reference."""
import math

import numpy as np
import pytest
import torch

from pcm_plugin.models import salient_patch_mixup
from pcm_plugin.models.mixup_selection import (
    select_pairs,
    top_patch_concept_pairs,
)

# Concepts e0..e3 in 3-d; the image's global feature is closest to e0, then
# e1, so top_k=2 retrieves [e0, e1].
CONCEPTS = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]])
GLOBAL = torch.tensor([[1., 0.9, 0.2]])
# p1 matches e0 and e1 equally (cos 0.700 each) and better than any other
# patch matches any concept, so it wins BOTH of the top-2 pairs; p2 is the
# next pair (p2, e0) with cos 0.447; p0 and p3 never qualify.
PATCHES = torch.tensor([[[0., 0, 1], [1, 1, 0.2], [0.5, 0, 1], [0, 0.4, 1]]])


def reference_mixup(patches, global_feat, concepts, top_k, top_m, tau,
                    threshold):
    """Loop-by-loop numpy re-statement of docs/method.md §3.1-3.4."""
    p, g, E = (np.asarray(x, dtype=np.float64)
               for x in (patches, global_feat, concepts))
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa
    out_t, out_m, out_idx = [], [], []
    for b in range(p.shape[0]):
        logits = unit(E) @ unit(g[b]) / tau
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        idx = np.argsort(-probs, kind='stable')[:top_k]
        kept = [k for k in range(top_k) if probs[idx[k]] > threshold]
        pairs = []
        t = np.zeros((p.shape[1], E.shape[1]))
        for j in range(p.shape[1]):
            cos = {k: float(unit(p[b, j]) @ unit(E[idx[k]])) for k in kept}
            w = np.array([math.exp(cos[k] / tau) for k in kept])
            w /= w.sum()
            t[j] = sum(wk * unit(E[idx[k]]) for wk, k in zip(w, kept))
            pairs += [(cos[k], j) for k in kept]
        pairs.sort(key=lambda x: -x[0])
        mask = np.zeros(p.shape[1], dtype=bool)
        for _, j in pairs[:top_m]:
            mask[j] = True
        out_t.append(t), out_m.append(mask), out_idx.append(idx)
    return np.stack(out_t), np.stack(out_m), np.stack(out_idx)


def test_one_patch_wins_several_concepts():
    textual, mask, idx = salient_patch_mixup(PATCHES, GLOBAL, CONCEPTS,
                                             top_k=2, top_m=2)
    assert idx.tolist() == [[0, 1]]
    # Two pairs selected, but both belong to p1: one distinct patch.
    assert mask.tolist() == [[False, True, False, False]]
    # p1's textual patch is the even mixture of e0 and e1.
    torch.testing.assert_close(textual[0, 1], torch.tensor([0.5, 0.5, 0.]))
    # p2 is almost purely e0 at temperature 0.01 (cos 0.447 vs 0).
    torch.testing.assert_close(textual[0, 2], torch.tensor([1., 0, 0]))


def test_third_pair_adds_second_patch():
    _, mask, _ = salient_patch_mixup(PATCHES, GLOBAL, CONCEPTS, top_k=2,
                                     top_m=3)
    assert mask.tolist() == [[False, True, True, False]]


def test_threshold_drops_unlikely_concepts():
    # p(e1) = exp((0.662 - 0.736) / 0.01) / Z ~ 6e-4 < 0.01: only e0 stays,
    # so the pair (p1, e1) cannot be selected and p1's mixture is pure e0.
    textual, mask, idx = salient_patch_mixup(PATCHES, GLOBAL, CONCEPTS,
                                             top_k=2, top_m=2,
                                             threshold=0.01)
    assert idx.tolist() == [[0, 1]]
    assert mask.tolist() == [[False, True, True, False]]
    torch.testing.assert_close(textual[0, 1], torch.tensor([1., 0, 0]))


def test_top_pairs_rank_the_flattened_affinity():
    inf = float('-inf')
    affinity = torch.tensor([[[0.1, 0.9],
                              [0.8, inf],
                              [0.3, 0.2]]])  # (1, N=3, K=2)
    pair_idx, pair_ok = top_patch_concept_pairs(affinity, 3)
    # 0.9 = patch 0 concept 1 (flat 1), 0.8 = patch 1 concept 0 (flat 2),
    # 0.3 = patch 2 concept 0 (flat 4).
    assert pair_idx.tolist() == [[1, 2, 4]] and pair_ok.all()
    pair_idx, pair_ok = top_patch_concept_pairs(affinity, 6)
    assert pair_idx[0, -1] == 3 and pair_ok.tolist() == [[True] * 5 + [False]]
    # A fraction of N*K = 6 pairs; at least one pair.
    assert top_patch_concept_pairs(affinity, 0.5)[0].shape == (1, 3)
    assert top_patch_concept_pairs(affinity, 0.01)[0].shape == (1, 1)


def test_fractional_top_m_counts_pairs():
    # top_m = 0.25 of N*K = 4*2 = 8 pairs -> 2 pairs, same as top_m=2.
    _, mask, _ = salient_patch_mixup(PATCHES, GLOBAL, CONCEPTS, top_k=2,
                                     top_m=0.25)
    assert mask.tolist() == [[False, True, False, False]]


def random_batch(seed):
    """3 images of 10 patches, 20 concepts, in 6-d."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(3, 10, 6, generator=gen),
            torch.randn(3, 6, generator=gen),
            torch.randn(20, 6, generator=gen))


@pytest.mark.parametrize('threshold', [0.0, 0.02])
def test_matches_reference_on_random_batch(threshold):
    patches, global_feat, concepts = random_batch(0)
    textual, mask, idx = salient_patch_mixup(
        patches, global_feat, concepts, top_k=4, top_m=5, temperature=0.05,
        threshold=threshold)
    ref_t, ref_m, ref_idx = reference_mixup(patches, global_feat, concepts,
                                            4, 5, 0.05, threshold)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_array_equal(mask.numpy(), ref_m)
    np.testing.assert_allclose(textual.numpy(), ref_t, atol=1e-5)
    assert 1 <= int(mask.sum(1).min()) and int(mask.sum(1).max()) <= 5


@pytest.mark.parametrize('threshold', [0.0, 0.02])
def test_select_pairs_is_the_mixups_own_selection(threshold):
    patches, global_feat, concepts = random_batch(1)
    kw = dict(top_k=4, top_m=5, temperature=0.05, threshold=threshold)
    _, mask, idx = salient_patch_mixup(patches, global_feat, concepts, **kw)
    concept_idx, pair_idx, pair_ok = select_pairs(patches, global_feat,
                                                  concepts, **kw)
    assert torch.equal(concept_idx, idx)
    selected = torch.zeros_like(mask)
    for b in range(3):
        selected[b, pair_idx[b][pair_ok[b]] // 4] = True  # patch of a pair
    assert torch.equal(selected, mask)
