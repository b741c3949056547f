"""SynC's algorithm on hand-built embeddings (pcm_plugin.data_prep.
pair_refinement)."""
import pytest
import torch
import torch.nn.functional as F

from pcm_plugin.data_prep import pair_refinement as sync


def unit(rows) -> torch.Tensor:
    return F.normalize(torch.as_tensor(rows, dtype=torch.float32), dim=-1)


def refine(text, images, sentences, own, *, k, k_back, tau=1.0,
           chunk_size=1024, **assign_kw):
    neigh = sync.search(text, images, k=k, k_back=k_back,
                        chunk_size=chunk_size)
    neigh.update(sentences=sentences,
                 own_sims=(text * images[own]).sum(dim=-1))
    chosen = sync.assign(neigh, own, chunk_size=chunk_size, **assign_kw)
    return neigh, chosen, sync.keep_best(chosen['score'], tau)


def planted_pool(num: int = 8, seed: int = 0):
    """Caption i shows concept i; image i shows concept i except images 2
    and 5, whose contents are swapped (two misaligned pairs)."""
    gen = torch.Generator().manual_seed(seed)
    concepts = unit(torch.randn(num, 16, generator=gen))  # (N, d)
    text = unit(concepts + 0.05 * torch.randn(num, 16, generator=gen))
    shown = torch.arange(num)
    shown[[2, 5]] = torch.tensor([5, 2])
    images = unit(concepts[shown] + 0.05 * torch.randn(num, 16,
                                                        generator=gen))
    sentences = unit(torch.randn(num, 12, generator=gen))
    return text, images, sentences, torch.arange(num)


def test_two_swapped_pairs_are_both_reassigned():
    text, images, sentences, own = planted_pool()
    _, chosen, _ = refine(text, images, sentences, own, k=3, k_back=1)
    expected = own.clone()
    expected[[2, 5]] = torch.tensor([5, 2])  # each takes the other image
    assert chosen['image'].tolist() == expected.tolist()
    # every chosen image retrieves its caption back: f = S_i . S_i = 1
    assert torch.allclose(chosen['score'], torch.ones(8))
    # the cosine is the chosen pair's, not the caption's own image's
    assert torch.allclose(chosen['clip_cos'],
                          (text * images[expected]).sum(dim=-1))


def test_one_to_one_keeps_the_images_and_scores_the_swapped_pairs_low():
    text, images, sentences, own = planted_pool()
    _, chosen, keep = refine(text, images, sentences, own, k=3, k_back=1,
                             tau=0.75, mapping='one_to_one')
    assert chosen['image'].tolist() == own.tolist()
    # the swapped images retrieve the other caption: f = S_2 . S_5 < 1
    assert chosen['score'][[2, 5]].tolist() == pytest.approx(
        [float((sentences[2] * sentences[5]).sum().half())] * 2, abs=1e-6)
    assert keep.tolist() == [0, 1, 3, 4, 6, 7]  # floor(0.75 * 8) = 6


def test_ties_go_to_the_better_text_to_image_rank():
    # Images 1 and 2 both retrieve caption 0 back (f = 1 for both);
    # caption 0 is closer to image 2, so image 2 wins the tie.
    text = unit([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    images = unit([[0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.95, 0.0, 0.05]])
    sentences = unit([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    neigh, chosen, _ = refine(text, images, sentences, torch.arange(3),
                              k=3, k_back=1)
    assert neigh['cand'][0].tolist() == [2, 1, 0]
    assert neigh['back'][:, 0].tolist() == [1, 0, 0]
    assert int(chosen['image'][0]) == 2 and float(chosen['score'][0]) == 1.0


def test_clip_scoring_takes_the_nearest_image():
    text, images, sentences, own = planted_pool()
    neigh, chosen, _ = refine(text, images, sentences, own, k=3, k_back=1,
                              score='clip')
    assert chosen['image'].tolist() == neigh['cand'][:, 0].tolist()


def test_top_k_rows_breaks_boundary_ties_by_index():
    sims = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1],
                         [0.2, 0.2, 0.2, 0.2, 0.2]])
    values, indices = sync.top_k_rows(sims, 3, offset=10)
    assert indices.tolist() == [[11, 10, 12], [10, 11, 12]]
    assert torch.equal(values, torch.tensor([[0.9, 0.5, 0.5],
                                             [0.2, 0.2, 0.2]]))


def test_merge_top_k_is_the_top_k_of_the_union_in_any_order():
    gen = torch.Generator().manual_seed(1)
    sims = torch.randn(20, 6, generator=gen).round(decimals=1)  # ties
    whole = sync.top_k_rows(sims.T, 3)
    parts = [sync.top_k_rows(sims[a:b].T, min(3, b - a), offset=a)
             for a, b in ((0, 7), (7, 9), (9, 20))]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        state = sync.empty_columns(6, 3, sentinel=20)
        for p in order:
            state = sync.merge_top_k(state, parts[p])
        assert torch.equal(state[1], whole[1])
        assert torch.equal(state[0], whole[0])


def test_chunked_search_equals_one_chunk():
    gen = torch.Generator().manual_seed(2)
    text = unit(torch.randn(37, 8, generator=gen))
    images = unit(torch.randn(29, 8, generator=gen))
    images[7] = images[3]  # a duplicate image: exact ties
    whole = sync.search(text, images, k=5, k_back=2, chunk_size=37)
    for chunk in (1, 4, 10):
        part = sync.search(text, images, k=5, k_back=2, chunk_size=chunk)
        for key in ('cand', 'back'):
            assert torch.equal(part[key], whole[key]), (key, chunk)
        assert torch.allclose(part['cand_sims'], whole['cand_sims'])


def test_keep_best_is_stable_and_in_caption_order():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.5])
    assert sync.keep_best(scores, 0.6).tolist() == [0, 1, 2]
    assert sync.keep_best(scores, 1.0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match='tau'):
        sync.keep_best(scores, 0.0)
