"""Annotation files, ground truth, image ids and the seeded image split."""
import json
import random

import pytest

from pcm_plugin.data_prep.annotations import (
    ImageCaptions,
    check_disjoint,
    coco_ground_truth,
    derive_image_ids,
    parse_split_spec,
    split_by_image,
    train_entries,
    write_annotation_files,
)


def make_images(n: int, caps_per_image: int = 2):
    return [ImageCaptions(image_id=str(100 + i), file_name=f'img_{i:03d}.jpg',
                          captions=[f'caption {k} of {i}'
                                    for k in range(caps_per_image)],
                          caption_ids=[f'{i}-{k}'
                                       for k in range(caps_per_image)])
            for i in range(n)]


def test_derive_image_ids_rules():
    coco = ['val2014/COCO_val2014_000000391895.jpg',
            'val2014/COCO_val2014_000000000042.jpg']
    assert derive_image_ids(coco) == (
        {coco[0]: '391895', coco[1]: '42'}, 'last')
    assert derive_image_ids(['1000092795.jpg', '7.jpg'])[1] == 'stem'
    flickr8k = ['1000268201_693b08cb0e.jpg', '1001773457_577c3a7d70.jpg']
    assert derive_image_ids(flickr8k) == (
        {flickr8k[0]: '1000268201', flickr8k[1]: '1001773457'}, 'first')
    # No number in the names: 1-based position in sorted order.
    assert derive_image_ids(['dog.jpg', 'cat.png']) == (
        {'cat.png': '1', 'dog.jpg': '2'}, 'index')
    # Numbers that collide are not used.
    assert derive_image_ids(['a_1.jpg', 'b_1.jpg'])[1] == 'index'
    with pytest.raises(ValueError, match="policy 'stem'"):
        derive_image_ids(['dog.jpg'], 'stem')


def test_parse_split_spec():
    assert parse_split_spec('0.9,0.05,0.05') == (0.9, 0.05, 0.05)
    assert parse_split_spec('rest,1000,1000') == (-1, 1000, 1000)
    assert parse_split_spec('6,2,2') == (6, 2, 2)
    for bad in ('0.9,0.1', '0.5,0.2,0.2', 'rest,rest,5', 'a,b,c',
                '-0.1,0.6,0.5'):
        with pytest.raises(ValueError, match='--split'):
            parse_split_spec(bad)


def test_split_by_image_sizes_disjoint_and_order_independent():
    images = make_images(20)
    splits = split_by_image(images, (0.5, 0.25, 0.25), seed=3)
    assert [len(splits[s]) for s in ('train', 'val', 'test')] == [10, 5, 5]
    names = [im.file_name for s in splits.values() for im in s]
    assert sorted(names) == sorted(im.file_name for im in images)
    check_disjoint(splits)
    # Same set of images in another order -> the same split.
    shuffled = images[:]
    random.Random(0).shuffle(shuffled)
    again = split_by_image(shuffled, (0.5, 0.25, 0.25), seed=3)
    assert {k: [i.file_name for i in v] for k, v in again.items()} == \
        {k: [i.file_name for i in v] for k, v in splits.items()}
    other = split_by_image(images, (0.5, 0.25, 0.25), seed=4)
    assert [i.file_name for i in other['val']] != \
        [i.file_name for i in splits['val']]
    # Each split keeps file-name order.
    assert all([i.file_name for i in v] == sorted(i.file_name for i in v)
               for v in splits.values())


def test_split_by_counts_and_rest():
    splits = split_by_image(make_images(10), (-1, 3, 2))
    assert [len(splits[s]) for s in ('train', 'val', 'test')] == [5, 3, 2]
    with pytest.raises(ValueError, match='do not add up'):
        split_by_image(make_images(10), (4, 3, 2))
    # A small non-zero fraction still gets one image.
    tiny = split_by_image(make_images(4), (0.98, 0.01, 0.01))
    assert [len(tiny[s]) for s in ('train', 'val', 'test')] == [2, 1, 1]


def test_train_entries_ids_and_traceability():
    images = [ImageCaptions('7', 'a.jpg', ['x one', 'x two'], ['11', '12']),
              ImageCaptions('9', 'b.jpg', ['y'], ['13'])]
    assert train_entries(images) == [
        dict(image_id='6000000', caption='x one', source_image_id='7',
             source_caption_id='11', source_file_name='a.jpg'),
        dict(image_id='6000001', caption='x two', source_image_id='7',
             source_caption_id='12', source_file_name='a.jpg'),
        dict(image_id='6000002', caption='y', source_image_id='9',
             source_caption_id='13', source_file_name='b.jpg'),
    ]
    assert train_entries(images, id_start=10)[2]['image_id'] == '12'


def test_coco_ground_truth_exact():
    images = [ImageCaptions('42', 'v/a.jpg', ['a cat', 'a dog'], ['5', '6']),
              ImageCaptions('7', 'v/b.jpg', ['a bird'], ['9'])]
    gt = coco_ground_truth(images)
    assert gt['images'] == [dict(id=42, file_name='v/a.jpg'),
                            dict(id=7, file_name='v/b.jpg')]
    assert gt['annotations'] == [
        dict(image_id=42, id=1, caption='a cat'),
        dict(image_id=42, id=2, caption='a dog'),
        dict(image_id=7, id=3, caption='a bird')]


def test_write_annotation_files_round_trip(tmp_path):
    splits = split_by_image(make_images(8, 3), (-1, 2, 2), seed=1)
    written = write_annotation_files(str(tmp_path), splits, dataset='toy',
                                     source='fixture')
    assert sorted(written) == ['test', 'test_gt', 'train', 'val', 'val_gt']
    train = json.loads(open(written['train']).read())
    assert train['metainfo'] == dict(dataset='toy', split='train',
                                     source='fixture', num_images=4,
                                     num_captions=12)
    assert [e['image_id'] for e in train['data_list']] == \
        [str(6000000 + k) for k in range(12)]
    val = json.loads(open(written['val']).read())
    assert [sorted(e) for e in val['data_list']] == \
        [['captions', 'file_name', 'image_id']] * 2
    assert all(int(e['image_id']) > 0 for e in val['data_list'])
    gt = json.loads(open(written['val_gt']).read())
    assert {a['image_id'] for a in gt['annotations']} == \
        {int(e['image_id']) for e in val['data_list']}
    assert not list(tmp_path.rglob('*.tmp*'))  # atomic writes cleaned up


def test_ground_truth_loads_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    images = make_images(3)
    path = write_annotation_files(str(tmp_path), {'test': images},
                                  dataset='toy', source='x')['test_gt']
    coco = COCO(path)
    assert sorted(coco.getImgIds()) == [100, 101, 102]
    results = coco.loadRes([dict(image_id=i, caption='a caption')
                            for i in (100, 101, 102)])
    assert len(results.getAnnIds()) == 3


def test_image_in_two_splits_is_refused(tmp_path):
    images = make_images(3)
    with pytest.raises(ValueError, match='id 101.*train and val'):
        write_annotation_files(str(tmp_path),
                               {'train': images[:2], 'val': images[1:]},
                               dataset='toy', source='x')
