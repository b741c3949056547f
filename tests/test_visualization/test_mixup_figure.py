"""The mix-up figure: PCM's own pairs, drawn where they belong."""
import numpy as np
import pytest
import torch
from PIL import Image

from pcm_plugin.visualization import draw_mixup, mixup_pairs


@pytest.fixture(scope='module')
def mixup(tiny_clip, tiny_bank):
    from pcm_plugin.registry import MODELS
    return MODELS.build(dict(
        type='PCMMixup', patch_dim=48, global_dim=32, num_patches=49,
        embed_dim=32, concept_bank=tiny_bank, clip_head=tiny_clip[1],
        top_k=3, top_m=4)).eval()


def test_pairs_are_the_patches_the_model_mixes(mixup):
    torch.manual_seed(0)
    patch, glob = torch.randn(4, 49, 48), torch.randn(4, 32)
    found = mixup_pairs(mixup, patch, glob)
    out = mixup(patch, glob)
    for b, item in enumerate(found):
        assert item['concepts'] == [mixup.concept_words[i] for i in
                                    out['concept_idx'][b].tolist()]
        assert sorted({p for p, _ in item['pairs']}) == \
            out['replace_mask'][b].nonzero()[:, 0].tolist()
        assert len(item['pairs']) == 4


def test_only_mixed_cells_are_tinted():
    """A 7x7 grid on a 700x490 image: the centre crop is 490x490, drawn at
    448; patch 8 (row 1, col 1) is tinted, patch 40 (row 5, col 5) not."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (490, 700, 3),
                                         dtype=np.uint8))
    figure = draw_mixup(image, [(8, 0)], ['dog', 'ball'], 49,
                        caption='a dog', size=448)
    crop = np.asarray(image.crop((105, 0, 595, 490)).resize(
        (448, 448), Image.BICUBIC)).astype(int)
    drawn = np.asarray(figure).astype(int)
    assert figure.size[0] == 448 and figure.size[1] > 448
    cell = 448 / 7
    inside = (int(1.5 * cell), int(1.7 * cell))  # (y, x) in patch 8
    outside = (int(5.5 * cell), int(5.5 * cell))  # patch 40
    assert np.abs(drawn[inside] - crop[inside]).sum() > 30
    assert np.array_equal(drawn[outside], crop[outside])
    with pytest.raises(ValueError, match='square grid'):
        draw_mixup(image, [], [], 50)
