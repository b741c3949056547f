"""Feature datasets, their transforms and the data_fraction cycling."""
import json
import math

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate

from pcm_plugin.datasets import (
    CaptionFeatureDataset,
    FeatureStore,
    SynthCaptionDataset,
)
from pcm_plugin.datasets.feature_store import write_feature_store
from pcm_plugin.datasets.transforms import LoadCLIPFeatures, PackCaptionInputs
from pcm_plugin.models import CaptionFeaturePreprocessor

PIPELINE = [LoadCLIPFeatures(), PackCaptionInputs()]


@pytest.fixture
def store(tmp_path):
    """10 images: patch (4, 3) filled with the image index, global (2,)."""
    ids = [str(600 + i) for i in range(10)]
    patch = np.stack([np.full((4, 3), i, np.float32) for i in range(10)])
    glob = np.stack([np.array([i, -i], np.float32) for i in range(10)])
    cos = np.linspace(0.1, 1.0, 10).astype(np.float32)
    root = str(tmp_path / 'feats')
    write_feature_store(root, ids, patch, glob, cos)
    ann = tmp_path / 'train.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=i, caption=f'caption {i}') for i in ids])))
    return str(ann), root, ids


def test_synth_dataset_packs_features_caption_and_cosine(store):
    ann, root, ids = store
    ds = SynthCaptionDataset(ann_file=ann, feature_dir=root,
                             pipeline=PIPELINE)
    assert len(ds) == 10
    item = ds[3]
    # float16 as stored: the model's preprocessor makes them float32.
    assert item['inputs']['patch_feats'].dtype == torch.float16
    assert torch.equal(item['inputs']['patch_feats'].float(),
                       torch.full((4, 3), 3.))
    assert torch.equal(item['inputs']['global_feat'].float(),
                       torch.tensor([3., -3.]))
    sample = item['data_samples']
    assert sample.gt_caption == 'caption 603'
    assert sample.image_id == '603' and sample.feature_dir == root
    assert sample.clip_cos == pytest.approx(0.4, abs=1e-3)  # fp16 store


def test_refined_entries_read_their_own_store_and_cosine(store, tmp_path):
    """A SynC-refined entry names its image's store and the new pair's
    cosine; both win over the dataset's store and the stored cosine."""
    ann, root, ids = store
    other = str(tmp_path / 'other')
    write_feature_store(other, ['900'], np.full((1, 4, 3), 9., np.float32),
                        np.array([[9., -9.]], np.float32))
    refined = tmp_path / 'refined.json'
    refined.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id='605', caption='caption 601', clip_cos=0.25,
             feature_dir=root, source_image_id='601'),
        dict(image_id='900', caption='caption 602', clip_cos=0.5,
             feature_dir=other, source_image_id='602'),
        dict(image_id='603', caption='caption 603')])))
    ds = SynthCaptionDataset(ann_file=str(refined), feature_dir=root,
                             pipeline=PIPELINE)
    items = [ds[i] for i in range(3)]
    assert [float(i['inputs']['global_feat'][0]) for i in items] == [
        5., 9., 3.]
    assert [i['data_samples'].clip_cos for i in items] == pytest.approx(
        [0.25, 0.5, 0.4], abs=1e-3)  # the last from the store
    assert [i['data_samples'].gt_caption for i in items] == [
        'caption 601', 'caption 602', 'caption 603']


def test_refined_entry_with_an_id_missing_from_its_store_is_named(
        store, tmp_path):
    ann, root, ids = store
    refined = tmp_path / 'refined.json'
    refined.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id='900', caption='c', feature_dir=root)])))
    with pytest.raises(KeyError, match=r"1 of 1 image ids .* have no "
                       r"features in .*feats \(e.g. \['900'\]\)"):
        SynthCaptionDataset(ann_file=str(refined), feature_dir=root,
                            pipeline=PIPELINE)


def test_data_fraction_keeps_the_step_count_and_cycles_the_subset(store):
    ann, root, ids = store
    ds = SynthCaptionDataset(ann_file=ann, feature_dir=root,
                             data_fraction=0.3, fraction_seed=7,
                             pipeline=PIPELINE)
    assert len(ds) == 10  # optimiser steps per epoch unchanged
    seen = [ds.get_data_info(i)['image_id'] for i in range(10)]
    subset = sorted(set(seen))
    assert len(subset) == 3
    # The 3 kept pairs repeat in order: 0 1 2 0 1 2 ...
    assert seen == [subset[i % 3] for i in range(10)]
    again = SynthCaptionDataset(ann_file=ann, feature_dir=root,
                                data_fraction=0.3, fraction_seed=7)
    assert [again.get_data_info(i)['image_id'] for i in range(3)] == \
        subset  # seeded
    with pytest.raises(ValueError, match='data_fraction'):
        SynthCaptionDataset(ann_file=ann, feature_dir=root, data_fraction=0)


def test_eval_dataset_has_no_caption_and_missing_ids_are_named(store,
                                                                tmp_path):
    ann, root, ids = store
    ds = CaptionFeatureDataset(ann_file=ann, feature_dir=root,
                               pipeline=PIPELINE, test_mode=True)
    assert 'gt_caption' not in ds.get_data_info(0)
    assert ds[0]['data_samples'].get('gt_caption') is None
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id='601'), dict(image_id='999')])))
    with pytest.raises(KeyError, match=r"1 of 2 image ids .* \['999'\]"):
        CaptionFeatureDataset(ann_file=str(bad), feature_dir=root)


def test_transforms_without_a_cosine(tmp_path):
    root = str(tmp_path / 'nocos')
    write_feature_store(root, ['1'], np.ones((1, 2, 2), np.float32),
                        np.ones((1, 2), np.float32))
    results = LoadCLIPFeatures()(dict(image_id='1', feature_dir=root))
    assert math.isnan(results['clip_cos'])
    packed = PackCaptionInputs()(results)
    assert 'clip_cos' not in packed['data_samples'].metainfo
    assert FeatureStore(root).ids == ['1']


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
def test_bad_input_non_finite_features_are_refused_naming_the_image(
        tmp_path, value, collate):
    """The real pipeline reads the bad image; the model's preprocessor
    refuses its batch, naming the image and its store."""
    root = str(tmp_path / 'nan')
    patch = np.ones((3, 2, 2), np.float32)
    patch[1, 0, 0] = value
    ids = ['a', 'b', 'c']
    write_feature_store(root, ids, patch, np.ones((3, 2), np.float32))
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=i, caption=f'caption {i}') for i in ids])))
    ds = SynthCaptionDataset(ann_file=str(ann), feature_dir=root,
                             pipeline=PIPELINE)
    preprocessor = CaptionFeaturePreprocessor()
    preprocessor(collate([ds[0], ds[2]]), True)  # fine
    with pytest.raises(ValueError, match=r'nan: the features of image b are '
                       r'not finite \(NaN/Inf\); re-extract them with '
                       r'tools/extract_features.py'):
        preprocessor(collate([ds[0], ds[1], ds[2]]), True)


def _store_with_extreme_values(root: str, rng) -> list:
    """A store whose float16 values include the extremes: subnormals, the
    largest finite, -0.0, and random ones."""
    special = np.array([0., -0., 6e-8, -6e-8, 6.1e-5, 65504., -65504.,
                        1 / 3, 1e-4], np.float32)
    patch = rng.standard_normal((6, 5, 8)).astype(np.float32) * 100
    patch.reshape(-1)[:special.size] = special  # (6*5*8,) view
    glob = rng.standard_normal((6, 4)).astype(np.float32)
    glob[0, :3] = [6e-8, -0., 65504.]
    ids = [f'im{i}' for i in range(6)]
    write_feature_store(root, ids, patch, glob,
                        np.full(6, 0.3, np.float32))
    return ids


@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
def test_float16_loading_gives_the_model_the_float32_values_bit_for_bit(
        tmp_path, collate):
    """The store's float16 rows cast to float32 in the preprocessor are
    the bits the earlier float32 loading gave (converted per sample with
    numpy in LoadCLIPFeatures, to_float32=True now)."""
    root = str(tmp_path / 'feats')
    ids = _store_with_extreme_values(root, np.random.default_rng(0))
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=i, caption=f'caption {i}') for i in ids])))
    preprocessor = CaptionFeaturePreprocessor()
    batches = {}
    for name, load in (('fp16', LoadCLIPFeatures()),
                       ('fp32', LoadCLIPFeatures(to_float32=True))):
        ds = SynthCaptionDataset(ann_file=str(ann), feature_dir=root,
                                 pipeline=[load, PackCaptionInputs()])
        batches[name] = preprocessor(collate([ds[i] for i in range(6)]),
                                     True)['inputs']
    # The earlier code: np.asarray(row, dtype=np.float32) per sample.
    reference = {key: torch.stack([
        torch.from_numpy(np.asarray(row, dtype=np.float32))
        for row in np.load(f'{root}/shard-00000.{part}.npy')])
        for key, part in (('patch_feats', 'patch'), ('global_feat', 'global'))}
    for key, expected in reference.items():
        for name, batch in batches.items():
            got = batch[key]
            assert got.dtype == torch.float32, name
            # Bits, not values: -0.0 == 0.0 would pass torch.equal.
            assert torch.equal(got.view(torch.int32),
                               expected.view(torch.int32)), (name, key)
    subnormal = reference['patch_feats'].reshape(-1)[2]
    assert 0 < subnormal < 6.1e-5  # the extremes survived the store


def test_store_get_keeps_float16_when_asked(store):
    _, root, _ = store
    features = FeatureStore(root)
    half, full = features.get('603', dtype=None), features.get('603')
    assert half['patch'].dtype == np.float16 == half['global_feat'].dtype
    assert full['patch'].dtype == np.float32
    assert np.array_equal(half['patch'].astype(np.float32), full['patch'])
    half['patch'][:] = -1  # a copy: the store is not touched
    assert features.get('603', dtype=None)['patch'][0, 0] == 3


@pytest.mark.parametrize('caption', ['', '  ', '...', '!?'])
def test_bad_input_empty_training_caption_is_refused(store, tmp_path,
                                                     caption):
    _, root, ids = store
    ann = tmp_path / 'bad_train.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=ids[0], caption='a red star'),
        dict(image_id=ids[1], caption=caption)])))
    with pytest.raises(ValueError, match=rf'bad_train.json: image {ids[1]} '
                       'has an empty or punctuation-only caption'):
        SynthCaptionDataset(ann_file=str(ann), feature_dir=root)


@pytest.mark.parametrize('damage, message', [
    ('index', r'index.json is damaged'),
    ('ids', r'shard-00000.ids.json is damaged'),
    ('npy', r'shard-00000.patch.npy is damaged or truncated'),
])
def test_bad_input_damaged_store_files_are_named(store, damage, message):
    import os
    _, root, _ = store
    name = {'index': 'index.json', 'ids': 'shard-00000.ids.json',
            'npy': 'shard-00000.patch.npy'}[damage]
    path = os.path.join(root, name)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])  # cut short, as by a full disk
    with pytest.raises(ValueError, match=message):
        FeatureStore(root).get('603')
