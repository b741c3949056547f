"""The mix-up's selection rules (mixup_selection.py): the official top-M
rule unchanged, one patch per concept, and words kept out of the writing,
on hand-built affinities with exact answers."""
import pytest
import torch

from pcm_plugin.models.mixup_selection import (
    choose_pairs,
    per_concept_pairs,
    salient_patch_mixup,
    select_pairs,
    top_patch_concept_pairs,
    writable_concepts,
)
from tests.test_models.mixup_checks import official_before, random_features

INF = float('-inf')
# (1, N=4, K=3). c0 and c1 both match p0 best (0.9 and 0.8: a collision);
# c1's best free patch is then p3 (0.75 > p1's 0.7), c2's is p2 (0.6).
AFFINITY = torch.tensor([[[0.9, 0.8, 0.1],
                          [0.2, 0.7, 0.3],
                          [0.1, 0.2, 0.6],
                          [0.5, 0.75, 0.65]]])

# The geometry of test_mixup_selection.py: concepts e0..e3 in 3-d, the
# image retrieves [e0, e1]; p1 matches e0 and e1 equally (cos 0.700 each,
# the same float), more than any other (patch, concept) pair.
CONCEPTS = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]])
GLOBAL = torch.tensor([[1., 0.9, 0.2]])
PATCHES = torch.tensor([[[0., 0, 1], [1, 1, 0.2], [0.5, 0, 1], [0, 0.4, 1]]])


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('settings', [
    dict(top_k=5, top_m=5, temperature=0.01, threshold=0.0),
    dict(top_k=4, top_m=0.05, temperature=0.05, threshold=0.02),
    dict(top_k=3, top_m=9, temperature=0.1, threshold=0.0)])
def test_official_rule_is_unchanged_to_the_bit(seed, settings):
    features = random_features(seed)
    want = official_before(*features, **settings)
    for kw in ({}, dict(selection='official', writable=None)):
        got = salient_patch_mixup(*features, **settings, **kw)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    # Every word writable is the official rule too (the mask changes
    # nothing), and select_pairs marks the same patches.
    writable = torch.ones(len(features[2]), dtype=torch.bool)
    got = salient_patch_mixup(*features, **settings, writable=writable)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    concept_idx, pair_idx, pair_ok = select_pairs(*features, **settings)
    K = settings['top_k']
    selected = torch.zeros_like(want[1])
    for b in range(len(selected)):
        selected[b, pair_idx[b][pair_ok[b]] // K] = True
    assert torch.equal(selected, want[1])
    assert torch.equal(concept_idx, want[2])


def test_per_concept_resolves_a_collision_greedily():
    pair_idx, pair_ok = per_concept_pairs(AFFINITY, 5)
    # (p0, c0) = 0, (p3, c1) = 3*3+1 = 10, (p2, c2) = 2*3+2 = 8; M = K = 3.
    assert pair_idx.tolist() == [[0, 10, 8]]
    assert pair_ok.tolist() == [[True, True, True]]
    # The official rule gives c0 and c1 the same patch p0: two patches.
    official, _ = top_patch_concept_pairs(AFFINITY, 3)
    assert official.tolist() == [[0, 1, 10]]


def test_per_concept_counts_and_dropped_concepts():
    # top_m below K keeps the best pairs; a fraction counts N*K = 12.
    assert per_concept_pairs(AFFINITY, 2)[0].tolist() == [[0, 10]]
    assert per_concept_pairs(AFFINITY, 0.25)[0].tolist() == [[0, 10, 8]]
    assert per_concept_pairs(AFFINITY, 0.1)[0].tolist() == [[0]]
    # A dropped concept (affinity -inf) writes nothing: the third pick
    # finds nothing left.
    dropped = AFFINITY.clone()
    dropped[..., 2] = INF
    pair_idx, pair_ok = per_concept_pairs(dropped, 5)
    assert pair_idx[:, :2].tolist() == [[0, 10]]
    assert pair_ok.tolist() == [[True, True, False]]
    # Fewer patches than concepts: one concept per patch, N pairs kept.
    pair_idx, pair_ok = per_concept_pairs(AFFINITY[:, :2], 5)
    assert pair_idx.tolist() == [[0, 4]] and pair_ok.all()


def test_per_concept_exact_tie_goes_to_the_lower_slot():
    tie = torch.tensor([[[0.5, 0.5], [0.4, 0.3]]])  # (1, N=2, K=2)
    pair_idx, pair_ok = per_concept_pairs(tie, 2)
    # (p0, c0) first (flat 0 before flat 1), then c1 takes p1 (flat 3).
    assert pair_idx.tolist() == [[0, 3]] and pair_ok.all()


def test_per_concept_writes_each_concept_into_its_own_patch():
    textual, mask, idx = salient_patch_mixup(
        PATCHES, GLOBAL, CONCEPTS, top_k=2, top_m=2, selection='per_concept')
    assert idx.tolist() == [[0, 1]]
    # e0 and e1 tie on p1: e0 (slot 0) keeps it, e1 takes its best free
    # patch p3 (cos 0.371); the official rule mixes p1 alone.
    assert mask.tolist() == [[False, True, False, True]]
    _, official_mask, _ = salient_patch_mixup(PATCHES, GLOBAL, CONCEPTS,
                                              top_k=2, top_m=2)
    assert official_mask.tolist() == [[False, True, False, False]]
    # p1 carries e0 itself, not the even mixture of e0 and e1; p3 carries
    # e1; unselected patches keep the mixture (p2: e0, at cos 0.447 vs 0).
    assert torch.equal(textual[0, 1], torch.tensor([1., 0, 0]))
    assert torch.equal(textual[0, 3], torch.tensor([0., 1, 0]))
    torch.testing.assert_close(textual[0, 2], torch.tensor([1., 0, 0]))


def test_writable_concepts_marks_the_excluded_words():
    mask = writable_concepts(['sky', 'dog', 'grass', 'cat'],
                             ['grass', 'sky', 'not-in-bank'])
    assert mask.tolist() == [False, True, False, True]


@pytest.mark.parametrize('selection', ['official', 'per_concept'])
def test_excluded_word_is_retrieved_but_never_written(selection):
    writable = torch.tensor([False, True, True, True])  # e0 excluded
    textual, mask, idx = salient_patch_mixup(
        PATCHES, GLOBAL, CONCEPTS, top_k=2, top_m=2, selection=selection,
        writable=writable)
    assert idx.tolist() == [[0, 1]]  # e0 still takes its slot
    # Only e1 may be written: the official rule takes its two best pairs,
    # p1 (0.700) and p3 (0.371); one concept writes one patch per concept.
    assert mask.tolist() == ([[False, True, False, True]]
                             if selection == 'official' else
                             [[False, True, False, False]])
    # Every textual patch is e1 alone: e0 is out of the mixture too.
    assert torch.equal(textual[0], torch.tensor([[0., 1, 0]] * 4))


@pytest.mark.parametrize('selection', ['official', 'per_concept'])
def test_excluded_words_on_a_random_batch(selection):
    features = random_features(3, batch=8, concepts=30)
    settings = dict(top_k=5, top_m=5, temperature=0.01, threshold=0.0)
    retrieved, _, _ = select_pairs(*features, **settings)
    # Exclude the words retrieved most often: they would be written.
    common = retrieved.flatten().bincount(minlength=30).argsort(
        descending=True)[:6]
    writable = torch.ones(30, dtype=torch.bool)
    writable[common] = False
    concept_idx, pair_idx, pair_ok = select_pairs(
        *features, **settings, selection=selection, writable=writable)
    assert torch.equal(concept_idx, retrieved)
    written = concept_idx.gather(1, pair_idx % 5)[pair_ok]  # (pairs,)
    assert len(written) > 0 and writable[written].all()
    # Pairs of writable words only: as many as the rule allows.
    allowed = writable[concept_idx].sum(1)  # (B,)
    assert int(allowed.min()) < 5  # the exclusion does bite
    counts = pair_ok.sum(1)
    assert torch.equal(counts, allowed.clamp(max=5)
                       if selection == 'per_concept' else
                       torch.full_like(counts, 5))


def test_per_concept_on_a_random_batch_uses_distinct_patches():
    features = random_features(4, batch=8)
    settings = dict(top_k=5, top_m=5, temperature=0.01, threshold=0.0)
    concept_idx, pair_idx, pair_ok = select_pairs(
        *features, **settings, selection='per_concept')
    textual, mask, _ = salient_patch_mixup(*features, **settings,
                                           selection='per_concept')
    assert pair_ok.all()
    for b in range(8):
        patches, slots = pair_idx[b] // 5, pair_idx[b] % 5
        assert len(set(patches.tolist())) == 5
        assert sorted(slots.tolist()) == [0, 1, 2, 3, 4]
        assert mask[b].nonzero()[:, 0].tolist() == sorted(patches.tolist())
        # The selected patch carries its concept's unit vector, exactly.
        concepts = features[2] / (features[2].norm(dim=-1, keepdim=True)
                                  + 1e-9)
        for patch, slot in zip(patches, slots):
            assert torch.equal(textual[b, patch],
                               concepts[concept_idx[b, slot]])


def test_unknown_selection_is_refused():
    with pytest.raises(ValueError, match="'official', 'per_concept'"):
        choose_pairs(AFFINITY, 5, 'per_patch')
