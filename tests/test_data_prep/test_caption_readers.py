"""Caption readers: Karpathy JSON, image,caption CSV, COCO captions."""
import json
import re

import pytest

from pcm_plugin.data_prep.bad_input import BadInputError, BadInputPolicy
from pcm_plugin.data_prep.caption_readers import (
    read_annotation_captions,
    read_caption_corpus,
    read_caption_csv,
    read_coco_captions,
    read_karpathy,
)


def karpathy_image(imgid, split, raws, cocoid=None, filepath='val2014'):
    image = dict(filename=f'COCO_{filepath}_{imgid:012d}.jpg',
                 filepath=filepath, imgid=imgid, split=split,
                 sentences=[dict(raw=r, sentid=10 * imgid + k,
                                 tokens=r.split()) for k, r in
                            enumerate(raws)])
    if cocoid is not None:
        image['cocoid'] = cocoid
    return image


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture
def karpathy_file(tmp_path):
    images = [
        karpathy_image(0, 'train', ['A dog.', 'Un café noir. '], 500),
        karpathy_image(1, 'restval', ['A cat.'], 501),
        karpathy_image(2, 'val', ['A bird.', 'A gull.'], 502),
        karpathy_image(3, 'test', ['A fish.'], 503),
        karpathy_image(4, 'train', ['A horse.'], 504),
    ]
    return write_json(tmp_path / 'dataset_coco.json',
                      dict(images=images, dataset='coco'))


def test_karpathy_splits_ids_and_restval(karpathy_file):
    splits, rule = read_karpathy(karpathy_file, policy=BadInputPolicy())
    assert rule == 'cocoid'
    assert [i.image_id for i in splits['train']] == ['500', '501', '504']
    assert [i.image_id for i in splits['val']] == ['502']
    assert [i.image_id for i in splits['test']] == ['503']
    first = splits['train'][0]
    assert first.file_name == 'val2014/COCO_val2014_000000000000.jpg'
    # Stripped, non-ASCII kept; Karpathy sentids kept as caption ids.
    assert first.captions == ['A dog.', 'Un café noir.']
    assert first.caption_ids == ['0', '1']
    splits, _ = read_karpathy(karpathy_file, policy=BadInputPolicy(),
                              restval='val')
    assert [i.image_id for i in splits['val']] == ['501', '502']
    splits, _ = read_karpathy(karpathy_file, policy=BadInputPolicy(),
                              restval='drop')
    assert sum(len(v) for v in splits.values()) == 4


def test_karpathy_flickr_ids_from_numeric_stems(tmp_path):
    images = [dict(filename='1000092795.jpg', imgid=0, split='test',
                   sentences=[dict(raw='Two men.')]),
              dict(filename='10002456.jpg', imgid=1, split='train',
                   sentences=[dict(raw='A dog.')])]
    path = write_json(tmp_path / 'dataset_flickr30k.json', dict(images=images))
    splits, rule = read_karpathy(path, policy=BadInputPolicy())
    assert rule == 'stem'
    assert splits['test'][0].image_id == '1000092795'
    assert splits['test'][0].file_name == '1000092795.jpg'
    assert splits['test'][0].caption_ids == ['1000092795:0']
    splits, _ = read_karpathy(path, policy=BadInputPolicy(), image_id='imgid')
    assert splits['train'][0].image_id == '1'


def test_karpathy_bad_entries(tmp_path):
    images = [karpathy_image(0, 'train', ['ok', '  '], 500),
              karpathy_image(1, 'val', ['fine'], 500),   # id listed twice
              karpathy_image(2, 'holdout', ['x'], 502),  # unknown split
              dict(filename='x.jpg', split='train'),     # no sentences
              karpathy_image(3, 'test', [''], 503)]      # no usable caption
    path = write_json(tmp_path / 'k.json', dict(images=images))
    with pytest.raises(BadInputError, match=r'k.json: images\[0\] .*'
                       r'sentences\[1\] has an empty'):
        read_karpathy(path, policy=BadInputPolicy())
    policy = BadInputPolicy(skip_bad=True)
    splits, _ = read_karpathy(path, policy=policy)
    assert [i.captions for i in splits['train']] == [['ok']]
    assert splits['val'] == [] and splits['test'] == []
    assert dict(policy.counts) == {
        'empty caption': 2, 'image listed twice': 1, 'unknown split': 1,
        'malformed image entry': 1, 'image without captions': 1}


def test_karpathy_not_a_karpathy_file(tmp_path):
    path = write_json(tmp_path / 'x.json', [1, 2])
    with pytest.raises(BadInputError, match='no `images` list'):
        read_karpathy(path, policy=BadInputPolicy())
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [\n  {"filename": }\n]}')
    with pytest.raises(BadInputError, match=r'broken.json:2:\d+: invalid'):
        read_karpathy(str(broken), policy=BadInputPolicy())


CSV = '''image,caption
1000_aa.jpg,A dog runs .
1000_aa.jpg,"A dog, brown, runs ."
2000_bb.jpg,"A caption, quoted ."
2000_bb.jpg,A second caption .

2000_bb.jpg,Ein Mädchen läuft .
'''


def test_csv_reads_quoted_blank_lines_and_non_ascii(tmp_path):
    path = tmp_path / 'captions.txt'
    path.write_text(CSV, encoding='utf-8')
    images, rule = read_caption_csv(str(path), policy=BadInputPolicy())
    assert rule == 'first'
    assert [(i.image_id, i.file_name) for i in images] == [
        ('1000', '1000_aa.jpg'), ('2000', '2000_bb.jpg')]
    assert images[0].captions == ['A dog runs .', 'A dog, brown, runs .']
    assert images[1].captions == ['A caption, quoted .',
                                  'A second caption .', 'Ein Mädchen läuft .']
    # Caption ids are the line numbers.
    assert images[0].caption_ids == ['2', '3'] and \
        images[1].caption_ids == ['4', '5', '7']


UNCLOSED = ('image,caption\n1000_aa.jpg,A dog runs .\n'
            '2000_bb.jpg,"A caption whose quote stays open\n'
            '3000_cc.jpg,A cat sleeps .\n4000_dd.jpg,A bird .\n')


@pytest.mark.parametrize('text, line', [
    (UNCLOSED, 3),
    ('image,caption\n1000_aa.jpg,"A caption over\ntwo lines ."\n', 2),
    ('image,caption\n1000_aa.jpg,A dog .\r\n2000_bb.jpg,"open to the end',
     3),
], ids=['unclosed_mid_file', 'caption_over_two_lines', 'open_to_the_end'])
def test_bad_input_csv_caption_with_a_line_break(tmp_path, text, line):
    """An unclosed quote (or a caption over two lines) is an error naming
    the file and its line, not a caption swallowing the lines after it."""
    path = tmp_path / 'captions.csv'
    path.write_bytes(text.encode('utf-8'))
    with pytest.raises(BadInputError, match=(
            rf'^{re.escape(str(path))}:{line}: the quote opened on this line '
            r'is not closed on it \(a caption cannot hold a line break\).*'
            'close the quote, or pass --skip-bad')):
        read_caption_csv(str(path), policy=BadInputPolicy())


def test_bad_input_csv_unclosed_quote_skips_its_line_alone(tmp_path):
    path = tmp_path / 'captions.csv'
    path.write_text(UNCLOSED)
    policy = BadInputPolicy(skip_bad=True)
    images, _ = read_caption_csv(str(path), policy=policy)
    assert [(i.file_name, i.captions, i.caption_ids) for i in images] == [
        ('1000_aa.jpg', ['A dog runs .'], ['2']),
        ('3000_cc.jpg', ['A cat sleeps .'], ['4']),
        ('4000_dd.jpg', ['A bird .'], ['5'])]
    assert policy.summary() == 'skipped 1 x unclosed quote'


def test_csv_malformed_row_names_line(tmp_path):
    path = tmp_path / 'captions.txt'
    path.write_text(CSV + '3000_cc.jpg,too,many,fields\n'
                    '3000_cc.jpg,\n4000_dd.jpg,fine .\n', encoding='utf-8')
    with pytest.raises(BadInputError, match=r'captions.txt:8: expected 2 '
                       r'fields \(image,caption\), got 4'):
        read_caption_csv(str(path), policy=BadInputPolicy())
    policy = BadInputPolicy(skip_bad=True)
    images, _ = read_caption_csv(str(path), policy=policy)
    assert [i.file_name for i in images] == ['1000_aa.jpg', '2000_bb.jpg',
                                             '4000_dd.jpg']
    assert dict(policy.counts) == {'malformed row': 1, 'empty caption': 1}
    assert 'captions.txt:9: empty caption for 3000_cc.jpg' in \
        policy.examples['empty caption'][0]


def test_csv_header_required(tmp_path):
    path = tmp_path / 'c.csv'
    path.write_text('1000_aa.jpg,A dog .\n')
    with pytest.raises(BadInputError, match=r'c.csv:1: expected the header'):
        read_caption_csv(str(path), policy=BadInputPolicy())


def test_csv_duplicate_rows(tmp_path):
    path = tmp_path / 'c.csv'
    path.write_text('image,caption\na_1.jpg,A dog .\nb_2.jpg,A cat .\n'
                    'a_1.jpg,A dog .\n')
    with pytest.raises(BadInputError, match=r"c.csv:4: repeats line 2 "
                       r"\(a_1.jpg, 'A dog .'\)"):
        read_caption_csv(str(path), policy=BadInputPolicy())
    images, _ = read_caption_csv(str(path), policy=BadInputPolicy(),
                                 duplicates='keep')
    assert images[0].captions == ['A dog .', 'A dog .']
    for policy, duplicates in ((BadInputPolicy(), 'skip'),
                               (BadInputPolicy(skip_bad=True), 'error')):
        images, _ = read_caption_csv(str(path), policy=policy,
                                     duplicates=duplicates)
        assert images[0].captions == ['A dog .']
        assert dict(policy.counts) == {'duplicate row': 1}


def test_csv_missing_image(tmp_path):
    (tmp_path / 'img').mkdir()
    (tmp_path / 'img' / 'a_1.jpg').write_bytes(b'jpeg')
    path = tmp_path / 'c.csv'
    path.write_text('image,caption\na_1.jpg,A dog .\nb_2.jpg,A cat .\n'
                    'b_2.jpg,Two cats .\n')
    img_dir = str(tmp_path / 'img')
    with pytest.raises(BadInputError, match=r'c.csv:3: image b_2.jpg not '
                       'found in .*img'):
        read_caption_csv(str(path), policy=BadInputPolicy(),
                         image_dir=img_dir)
    policy = BadInputPolicy(skip_bad=True)
    images, _ = read_caption_csv(str(path), policy=policy, image_dir=img_dir)
    assert [i.file_name for i in images] == ['a_1.jpg']
    assert dict(policy.counts) == {'missing image': 1}  # once per image


def coco_file(tmp_path, images, annotations):
    return write_json(tmp_path / 'captions.json',
                      dict(info={}, images=images, annotations=annotations))


def test_coco_reader_orders_by_annotation_id(tmp_path):
    path = coco_file(
        tmp_path, [dict(id=42, file_name='COCO_val2014_42.jpg'),
                   dict(id=7, file_name='COCO_val2014_7.jpg')],
        [dict(id=30, image_id=42, caption='third '),
         dict(id=10, image_id=42, caption='first'),
         dict(id=20, image_id=7, caption='only')])
    images = read_coco_captions(path, policy=BadInputPolicy(),
                                image_prefix='val2014/')
    assert [(i.image_id, i.file_name, i.captions, i.caption_ids)
            for i in images] == [
        ('42', 'val2014/COCO_val2014_42.jpg', ['first', 'third'],
         ['10', '30']),
        ('7', 'val2014/COCO_val2014_7.jpg', ['only'], ['20'])]


@pytest.mark.parametrize('images,annotations,message,kind', [
    ([dict(id=1, file_name='a.jpg'), dict(id=1, file_name='b.jpg')],
     [dict(id=1, image_id=1, caption='x')],
     r'images\[1\]: image id 1 \(b.jpg\) was already listed at .*images\[0\]',
     'image listed twice'),
    ([dict(id=1, file_name='a.jpg'), dict(id=2, file_name='a.jpg')],
     [dict(id=1, image_id=1, caption='x')],
     r'images\[1\]: image file a.jpg', 'image listed twice'),
    ([dict(id=1, file_name='a.jpg')],
     [dict(id=1, image_id=1, caption='x'), dict(id=2, image_id=9,
                                                 caption='y')],
     r'annotations\[1\]: image_id 9 is not in `images`',
     'caption of unknown image'),
    ([dict(id=1, file_name='a.jpg')],
     [dict(id=1, image_id=1, caption='x'), dict(id=2, image_id=1,
                                                 caption=' ')],
     r'annotations\[1\] \(image 1\): empty', 'empty caption'),
    ([dict(id=1, file_name='a.jpg')],
     [dict(id=1, image_id=1, caption='x'), dict(id=1, image_id=1,
                                                 caption='y')],
     r'annotations\[1\] repeats annotation id 1', 'duplicate annotation id'),
])
def test_coco_reader_bad_input(tmp_path, images, annotations, message, kind):
    path = coco_file(tmp_path, images, annotations)
    with pytest.raises(BadInputError, match=message):
        read_coco_captions(path, policy=BadInputPolicy())
    policy = BadInputPolicy(skip_bad=True)
    kept = read_coco_captions(path, policy=policy)
    assert dict(policy.counts) == {kind: 1}
    assert [i.captions for i in kept] == [['x']]


def test_coco_reader_missing_image(tmp_path):
    path = coco_file(tmp_path, [dict(id=1, file_name='a.jpg')],
                     [dict(id=1, image_id=1, caption='x')])
    with pytest.raises(BadInputError, match=r'images\[0\]: image a.jpg not '
                       'found'):
        read_coco_captions(path, policy=BadInputPolicy(),
                           image_dir=str(tmp_path))
    policy = BadInputPolicy(skip_bad=True)
    assert read_coco_captions(path, policy=policy,
                              image_dir=str(tmp_path)) == []
    assert dict(policy.counts) == {'missing image': 1}


def test_read_caption_corpus_detects_formats(tmp_path, karpathy_file):
    csv_path = tmp_path / 'c.csv'
    csv_path.write_text('image,caption\na_1.jpg,A dog .\n')
    coco = coco_file(tmp_path, [dict(id=1, file_name='a.jpg')],
                     [dict(id=1, image_id=1, caption='A cat .')])
    ann = write_json(tmp_path / 'train.json', dict(
        metainfo={}, data_list=[dict(image_id='6000000', caption='A bird .'),
                                dict(image_id='3', captions=['A', 'B'])]))
    assert read_caption_corpus(str(csv_path)) == ['A dog .']
    assert read_caption_corpus(coco) == ['A cat .']
    assert read_caption_corpus(ann) == ['A bird .', 'A', 'B']
    assert read_annotation_captions(ann) == ['A bird .', 'A', 'B']
    # Karpathy: train + restval only.
    assert read_caption_corpus(karpathy_file) == [
        'A dog.', 'Un café noir.', 'A cat.', 'A horse.']
