"""Feature datasets, their transforms and the data_fraction cycling."""
import json
import math

import numpy as np
import pytest
import torch

from pcm_plugin.datasets import (
    CaptionFeatureDataset,
    FeatureStore,
    SynthCaptionDataset,
)
from pcm_plugin.datasets.feature_store import write_feature_store
from pcm_plugin.datasets.transforms import LoadCLIPFeatures, PackCaptionInputs

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
    assert torch.equal(item['inputs']['patch_feats'], torch.full((4, 3), 3.))
    assert torch.equal(item['inputs']['global_feat'], torch.tensor([3., -3.]))
    sample = item['data_samples']
    assert sample.gt_caption == 'caption 603'
    assert sample.image_id == '603'
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
def test_bad_input_non_finite_features_are_refused_naming_the_image(
        tmp_path, value):
    root = str(tmp_path / 'nan')
    patch = np.ones((2, 2, 2), np.float32)
    patch[1, 0, 0] = value
    write_feature_store(root, ['a', 'b'], patch, np.ones((2, 2), np.float32))
    LoadCLIPFeatures()(dict(image_id='a', feature_dir=root))  # fine
    with pytest.raises(ValueError, match=r'nan: the features of image b are '
                       r'not finite'):
        LoadCLIPFeatures()(dict(image_id='b', feature_dir=root))


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
