"""The text-side tools end to end: convert_karpathy, convert_captions,
build_vocab and build_concepts (encode / nouns / import-official).

Most runs call the tool's ``main(argv)`` in-process (a subprocess costs a
few seconds of imports each); two run as real subprocesses to cover the
entry points themselves (marked slow: a fresh interpreter each).
"""
import json
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = ['tools/data/convert_karpathy.py', 'tools/data/convert_captions.py',
         'tools/build_vocab.py', 'tools/build_concepts.py']


run_tool = helpers.run_tool_main


def read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture
def karpathy_json(tmp_path):
    def image(imgid, split, raws):
        return dict(filename=f'COCO_val2014_{imgid:012d}.jpg',
                    filepath='val2014', imgid=imgid, cocoid=1000 + imgid,
                    split=split, sentences=[
                        dict(raw=r, sentid=10 * imgid + k)
                        for k, r in enumerate(raws)])
    data = dict(dataset='coco', images=[
        image(0, 'train', ['A dog runs.', 'A brown dog.']),
        image(1, 'restval', ['A cat sleeps.']),
        image(2, 'val', ['A red bus.', 'A bus on a road.']),
        image(3, 'test', ['A man surfing.']),
    ])
    path = tmp_path / 'dataset_coco.json'
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize('tool', TOOLS)
def test_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool, ['--help'])
    assert exit_info.value.code == 0
    assert 'usage:' in capsys.readouterr().out


@pytest.mark.slow
def test_convert_karpathy_cli_subprocess(karpathy_json, tmp_path):
    out = tmp_path / 'coco'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/data/convert_karpathy.py'),
         str(karpathy_json), '--out', str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'image ids: cocoid (restval -> train)' in proc.stdout
    ann = out / 'annotations'
    train = read(ann / 'train.json')
    assert train['metainfo']['dataset'] == 'coco'
    assert [(e['image_id'], e['caption'], e['source_image_id'])
            for e in train['data_list']] == [
        ('6000000', 'A dog runs.', '1000'),
        ('6000001', 'A brown dog.', '1000'),
        ('6000002', 'A cat sleeps.', '1001')]
    assert read(ann / 'val.json')['data_list'] == [dict(
        image_id='1002', file_name='val2014/COCO_val2014_000000000002.jpg',
        captions=['A red bus.', 'A bus on a road.'])]
    assert read(ann / 'test_gt.json')['annotations'] == [
        dict(image_id=1003, id=1, caption='A man surfing.')]


def test_convert_karpathy_options_and_errors(karpathy_json, tmp_path,
                                             capsys):
    assert run_tool('tools/data/convert_karpathy.py', [
        karpathy_json, '--out', tmp_path, '--restval', 'test',
        '--train-id-start', 100]) == 0
    ann = tmp_path / 'annotations'
    assert [e['image_id'] for e in read(ann / 'train.json')['data_list']] \
        == ['100', '101']
    assert len(read(ann / 'test.json')['data_list']) == 2
    data = read(karpathy_json)
    data['images'][2]['sentences'][1]['raw'] = ''
    karpathy_json.write_text(json.dumps(data))
    assert run_tool('tools/data/convert_karpathy.py',
                    [karpathy_json, '--out', tmp_path]) == 1
    assert r'images[2]' in capsys.readouterr().err
    assert run_tool('tools/data/convert_karpathy.py',
                    [karpathy_json, '--out', tmp_path, '--skip-bad']) == 0
    assert 'skipped 1 x empty caption' in capsys.readouterr().out


CSV = ('image,caption\n' + ''.join(
    f'{n}_x.jpg,"Caption {k}, of image {n} ."\n'
    for n in range(10, 30) for k in range(2)))


def test_convert_captions_csv_split(tmp_path, capsys):
    src = tmp_path / 'toy8k' / 'captions.txt'
    src.parent.mkdir()
    src.write_text(CSV)
    assert run_tool('tools/data/convert_captions.py', [
        src, '--out', tmp_path / 'out', '--split', 'rest,4,3',
        '--seed', 1]) == 0
    assert 'image ids: from file names (first)' in capsys.readouterr().out
    ann = tmp_path / 'out' / 'annotations'
    train, val, test = (read(ann / f'{s}.json')
                        for s in ('train', 'val', 'test'))
    assert train['metainfo']['dataset'] == 'toy8k'
    assert (len(train['data_list']), len(val['data_list']),
            len(test['data_list'])) == (26, 4, 3)
    sets = [{e['source_file_name'] for e in train['data_list']},
            {e['file_name'] for e in val['data_list']},
            {e['file_name'] for e in test['data_list']}]
    assert sum(map(len, sets)) == 20 == len(set.union(*sets))
    # Captions of an image stay together, in file order.
    assert val['data_list'][0]['captions'][0].startswith('Caption 0, of')
    # Same seed -> same split; the split flag is validated.
    assert run_tool('tools/data/convert_captions.py', [
        src, '--out', tmp_path / 'again', '--split', 'rest,4,3',
        '--seed', 1]) == 0
    assert read(tmp_path / 'again' / 'annotations' / 'val.json') == val
    assert run_tool('tools/data/convert_captions.py',
                    [src, '--out', tmp_path, '--split', '0.5,0.5']) == 1
    assert '--split' in capsys.readouterr().err


def test_convert_captions_coco(tmp_path):
    src = tmp_path / 'captions_val2014.json'
    src.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'COCO_val2014_{i:012d}.jpg')
                for i in range(1, 7)],
        annotations=[dict(id=100 + i, image_id=1 + i % 6,
                          caption=f'caption {i}') for i in range(12)])))
    assert run_tool('tools/data/convert_captions.py', [
        src, '--out', tmp_path / 'out', '--image-prefix', 'val2014/',
        '--split', '4,1,1']) == 0
    ann = tmp_path / 'out' / 'annotations'
    val = read(ann / 'val.json')['data_list'][0]
    assert val['file_name'] == \
        f'val2014/COCO_val2014_{int(val["image_id"]):012d}.jpg'
    assert len(val['captions']) == 2
    assert len(read(ann / 'train.json')['data_list']) == 8


def test_build_vocab_tool(tmp_path, capsys):
    from pcm_plugin.models.tokenizer import load_caption_tokenizer
    ann = tmp_path / 'data' / 'annotations'
    ann.mkdir(parents=True)
    (ann / 'train.json').write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=str(6000000 + i), caption=c) for i, c in enumerate(
            ['a dog runs', 'a dog sits', 'a cat sits', 'the cat'])])))
    (ann / 'test.json').write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id='1', file_name='x.jpg',
             captions=['a dog flies', 'a bird'])])))
    assert run_tool('tools/build_vocab.py', [
        ann / 'train.json', '--min-count', 2, '--coverage-ann',
        ann / 'test.json', '--stats-out', tmp_path / 'stats.json']) == 0
    printed = capsys.readouterr().out
    assert 'vocabulary: 4 words seen >= 2 times (+3 special tokens = 7 ids)' \
        in printed
    stats = read(tmp_path / 'stats.json')
    held_out = stats['held_out'][str(ann / 'test.json')]
    assert (held_out['num_tokens'], held_out['num_unk']) == (5, 2)
    tokenizer = load_caption_tokenizer(str(tmp_path / 'data'))
    assert tokenizer.decode(tokenizer('A dog sits!')['input_ids']) == \
        'a dog sits'
    assert run_tool('tools/build_vocab.py',
                    [tmp_path / 'missing.json']) == 1
    assert 'missing.json' in capsys.readouterr().err


def test_build_concepts_encode(tiny_clip, tmp_path):
    from pcm_plugin.clip.clip_features import load_open_clip_text_model
    from pcm_plugin.data_prep.concepts import encode_concepts
    from pcm_plugin.models.concept_bank import load_concept_bank
    name, ckpt = tiny_clip
    config = osp.join(osp.dirname(ckpt), f'{name}.json')
    words = tmp_path / 'words.txt'
    words.write_text('dog\ncat\nkite\n')
    out = tmp_path / 'bank.npz'
    assert run_tool('tools/build_concepts.py', [
        'encode', '--words', words, '--clip-model', name,
        '--clip-checkpoint', ckpt, '--model-config', config,
        '--templates', 'single', '--dtype', 'float16', '--out', out]) == 0
    got_words, emb, meta = load_concept_bank(str(out))
    assert got_words == ['dog', 'cat', 'kite']
    assert meta['templates'] == ['a photo of {}.']
    assert meta['clip_model'] == name and len(
        meta['clip_checkpoint_sha256']) == 64
    model, tokenizer = load_open_clip_text_model(name, ckpt, config)
    expected = encode_concepts(model, tokenizer, got_words,
                               ['a photo of {}.'])
    np.testing.assert_array_equal(emb, expected.astype(np.float16))


def test_build_concepts_nouns(tmp_path, capsys):
    src = tmp_path / 'c.csv'
    src.write_text('image,caption\n' + ''.join(
        f'{i}.jpg,{c}\n' for i, c in enumerate(
            ['A dog on a bed .', 'Two dogs near a tree .',
             'A man riding a horse .', 'The dog and a zebra .'])))
    out, counts = tmp_path / 'nouns.txt', tmp_path / 'counts.tsv'
    assert run_tool('tools/build_concepts.py', [
        'nouns', src, '--out', out, '--top-k', 4,
        '--counts-out', counts]) == 0
    assert out.read_text() == 'bed\ndog\nhorse\nman\n'  # alphabetical
    assert counts.read_text().split('\n')[:2] == ['dog\t3', 'bed\t1']
    assert 'overlap with the official 446 concept words: 4 ' in \
        capsys.readouterr().out


def test_build_concepts_import_official(tmp_path, capsys):
    import torch

    from pcm_plugin.models.concept_bank import load_concept_bank
    rows = torch.nn.functional.normalize(torch.randn(3, 8), dim=1).half()
    src = tmp_path / 'coco400_embeddings_ViT-B32_with_ensemble.pickle'
    src.write_bytes(pickle.dumps((['ant', 'bee', 'cow'], rows)))
    for dtype in ('float16', 'float32'):
        out = tmp_path / f'{dtype}.npz'
        assert run_tool('tools/build_concepts.py', [
            'import-official', src, '--out', out, '--dtype', dtype]) == 0
        words, emb, meta = load_concept_bank(str(out))
        assert words == ['ant', 'bee', 'cow']
        np.testing.assert_array_equal(emb, rows.float().numpy())
        assert meta['clip_model'] == 'ViT-B/32'
    assert 'words identical to the shipped 446-word list: NO' in \
        capsys.readouterr().out


@pytest.mark.slow
def test_import_official_refuses_crafted_pickle_subprocess(tmp_path):
    marker = tmp_path / 'pwned'
    src = tmp_path / 'evil.pickle'
    # protocol 0 spells the global out as text: posix/nt system.
    src.write_bytes(b'c' + __import__('os').system.__module__.encode() +
                    b'\nsystem\n(V' + f'touch {marker}'.encode() + b'\ntR.')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/build_concepts.py'),
         'import-official', str(src), '--out', str(tmp_path / 'x.npz')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'refusing to load global posix.system' in proc.stderr or \
        'refusing to load global nt.system' in proc.stderr
    assert not marker.exists() and not (tmp_path / 'x.npz').exists()
