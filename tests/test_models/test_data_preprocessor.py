"""CaptionFeaturePreprocessor: float16 batches made float32 exactly, both
collate styles, data samples passed on, non-finite features refused."""
import pytest
import torch
from mmpretrain.structures import DataSample

from pcm_plugin.models.data_preprocessor import (
    CaptionFeaturePreprocessor,
    check_finite,
)


def _batch(n: int = 3, dtype=torch.float16, store: str = 'feats/train'):
    g = torch.Generator().manual_seed(0)
    patch = (torch.randn(n, 4, 6, generator=g) * 50).to(dtype)  # (n, N, Dv)
    glob = torch.randn(n, 5, generator=g).to(dtype)  # (n, Dg)
    samples = [DataSample(metainfo=dict(image_id=f'img{i}',
                                        feature_dir=store))
               for i in range(n)]
    return dict(inputs=dict(patch_feats=patch, global_feat=glob),
                data_samples=samples)


def test_float16_batch_becomes_the_same_values_in_float32():
    batch = _batch()
    out = CaptionFeaturePreprocessor()(batch, True)
    for key in ('patch_feats', 'global_feat'):
        assert out['inputs'][key].dtype == torch.float32
        assert torch.equal(out['inputs'][key].half(), batch['inputs'][key])
    # Passed on as they are: they hold no tensors to move.
    assert out['data_samples'] is batch['data_samples']


def test_pseudo_collate_lists_are_stacked_like_default_collate():
    batch = _batch()
    listed = dict(
        inputs=[dict(patch_feats=p, global_feat=g) for p, g in zip(
            batch['inputs']['patch_feats'], batch['inputs']['global_feat'])],
        data_samples=batch['data_samples'])
    preprocessor = CaptionFeaturePreprocessor()
    a = preprocessor(batch, False)['inputs']
    b = preprocessor(listed, False)['inputs']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_images_are_made_float_and_not_checked():
    images = torch.full((2, 3, 8, 8), float('nan'), dtype=torch.float16)
    out = CaptionFeaturePreprocessor()(dict(inputs=dict(images=images)))
    assert out['inputs']['images'].dtype == torch.float32


def test_finite_values_whose_sum_overflows_pass():
    """The check's float32 sum overflows past ~1e34 per value; the exact
    test must then let finite features through."""
    batch = _batch(dtype=torch.float32)
    batch['inputs']['patch_feats'][1] = 3e38
    CaptionFeaturePreprocessor()(batch, True)


@pytest.mark.parametrize('key', ['patch_feats', 'global_feat'])
@pytest.mark.parametrize('value', [float('nan'), float('inf'),
                                   float('-inf')])
def test_bad_input_non_finite_features_name_the_image_and_store(key, value):
    batch = _batch()
    batch['inputs'][key][1].view(-1)[-1] = value
    with pytest.raises(ValueError, match=r'^feats/train: the features of '
                       r'image img1 are not finite \(NaN/Inf\); re-extract '
                       r'them with tools/extract_features.py or drop'):
        CaptionFeaturePreprocessor()(batch, True)


def test_bad_input_several_images_and_stores_are_all_named():
    batch = _batch(4)
    batch['data_samples'][3].set_metainfo(dict(feature_dir='feats/other'))
    patch = batch['inputs']['patch_feats']
    patch[0, 0, 0], patch[2, 1, 1] = float('nan'), float('inf')
    patch[3, 0, 0] = float('-inf')
    with pytest.raises(ValueError, match=r'feats/train: the features of '
                       r'images img0, img2 are not finite \(NaN/Inf\); '
                       r'feats/other: the features of image img3 are not '
                       r'finite \(NaN/Inf\); re-extract'):
        CaptionFeaturePreprocessor()(batch, True)


def test_bad_input_non_finite_without_data_samples_names_positions():
    inputs = _batch()['inputs']
    inputs['global_feat'][2, 0] = float('nan')
    inputs = {k: v.float() for k, v in inputs.items()}
    with pytest.raises(ValueError, match=r'the feature store: the features '
                       r'of image at batch position 2 are not finite'):
        check_finite(inputs)
