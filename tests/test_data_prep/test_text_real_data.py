"""The text tools on real data nobody here wrote (``../shared/data``).

* the official PCM-Net concept banks, imported without running pickle code
  and compared with an independent plain-pickle read in a subprocess;
* all 40,455 Flickr8k captions (CSV) and 24,019 COCO val2014 captions
  (official format) through the converters, the vocabulary builder and the
  frequent-noun tool.

``shared_data`` (tests/conftest.py) skips when ../shared/data is absent.
"""
import json
import os.path as osp
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.real_data

BANKS = {'B32': 512, 'L14': 768}


run_tool = helpers.run_tool_main


def bank_pickle(shared_data: str, key: str) -> str:
    return osp.join(shared_data, 'pcm-net-official',
                    f'coco400_embeddings_ViT-{key}_with_ensemble.pickle')


def plain_pickle_read(path: str, out_dir) -> tuple:
    """The trusted file read with plain ``pickle.load``, in a subprocess."""
    code = ('import json, pickle, sys, numpy as np\n'
            'words, emb = pickle.load(open(sys.argv[1], "rb"))\n'
            'np.save(sys.argv[2] + "/emb.npy", emb.numpy())\n'
            'json.dump(words, open(sys.argv[2] + "/words.json", "w"))\n')
    subprocess.run([sys.executable, '-c', code, path, str(out_dir)],
                   check=True, timeout=300)
    return (json.loads((out_dir / 'words.json').read_text()),
            np.load(out_dir / 'emb.npy'))


@pytest.fixture(scope='module')
def imported_banks(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('banks')
    paths = {}
    for key in BANKS:
        paths[key] = str(out / f'official_{key}.npz')
        assert run_tool('tools/build_concepts.py', [
            'import-official', bank_pickle(shared_data, key), '--out',
            paths[key]]) == 0
    return paths


@pytest.mark.parametrize('key', list(BANKS))
def test_official_bank_import(key, imported_banks, shared_data, tmp_path):
    from pcm_plugin.models.concept_bank import (
        default_concept_words,
        load_concept_bank,
    )
    words, emb, meta = load_concept_bank(imported_banks[key])
    assert words == default_concept_words() and len(words) == 446
    assert emb.shape == (446, BANKS[key])
    with np.load(imported_banks[key], allow_pickle=False) as raw:
        assert raw['embeddings'].dtype == np.float16
        stored = raw['embeddings']
    ref_words, ref_emb = plain_pickle_read(bank_pickle(shared_data, key),
                                           tmp_path)
    assert ref_words == words
    assert ref_emb.dtype == np.float16
    assert stored.tobytes() == ref_emb.tobytes()  # bit-exact fp16
    np.testing.assert_array_equal(emb, ref_emb.astype(np.float32))
    norms = np.linalg.norm(emb, axis=1)
    assert 0.99 <= norms.min() and norms.max() <= 1.02
    assert meta['original_file'] == osp.basename(
        bank_pickle(shared_data, key))


def test_edited_real_bank_fails_naming_the_word(imported_banks, tmp_path):
    from pcm_plugin.models.concept_bank import load_concept_bank
    with np.load(imported_banks['B32'], allow_pickle=False) as raw:
        words, emb = list(raw['words']), raw['embeddings'].copy()
    dup = str(tmp_path / 'dup.npz')
    np.savez(dup, words=np.asarray(words[:6] + ['apple'] + words[7:]),
             embeddings=emb, meta=np.asarray('{}'))
    with pytest.raises(ValueError, match=r"dup.npz: duplicate concept word "
                       r"'apple'"):
        load_concept_bank(dup)
    emb[10, 3] = np.nan
    nan = str(tmp_path / 'nan.npz')
    np.savez(nan, words=np.asarray(words), embeddings=emb,
             meta=np.asarray('{}'))
    with pytest.raises(ValueError, match=rf"nan.npz: embedding of word "
                       rf"'{words[10]}' \(row 10\) has NaN"):
        load_concept_bank(nan)


@pytest.fixture(scope='module')
def flickr8k(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('flickr8k')
    assert run_tool('tools/data/convert_captions.py', [
        osp.join(shared_data, 'flickr8k', 'captions.txt'), '--out', out,
        '--duplicates', 'keep']) == 0
    return out


def read(path):
    return json.loads(open(path, encoding='utf-8').read())


def test_flickr8k_conversion(flickr8k):
    ann = flickr8k / 'annotations'
    train, val, test = (read(ann / f'{s}.json')['data_list']
                        for s in ('train', 'val', 'test'))
    assert (len(train), len(val), len(test)) == (36405, 405, 405)
    eval_images = [e['file_name'] for e in val + test]
    train_images = {e['source_file_name'] for e in train}
    assert len(train_images) == 7281
    assert len(set(eval_images)) == 810 and not train_images & set(
        eval_images)  # no image in two splits
    assert len(train) + sum(len(e['captions']) for e in val + test) == 40455
    assert len(train_images) + len(eval_images) == 8091
    assert [e['image_id'] for e in train[:2]] == ['6000000', '6000001']
    gt = read(ann / 'test_gt.json')
    assert len(gt['images']) == 405 and len(gt['annotations']) == 2025
    assert {int(e['image_id']) for e in test} == {i['id']
                                                  for i in gt['images']}


def test_flickr8k_bad_input(shared_data, tmp_path, capsys):
    captions = osp.join(shared_data, 'flickr8k', 'captions.txt')
    # Flickr8k really repeats 10 image+caption rows (an annotation artifact).
    assert run_tool('tools/data/convert_captions.py',
                    [captions, '--out', tmp_path / 'a']) == 1
    assert 'captions.txt:7470: repeats line 7469' in capsys.readouterr().err
    # Only the first 1,000 photos ship; the rest are missing images.
    assert run_tool('tools/data/convert_captions.py', [
        captions, '--out', tmp_path / 'b', '--image-dir',
        osp.join(shared_data, 'flickr8k', 'images'), '--skip-bad',
        '--split', '0.8,0.1,0.1']) == 0
    printed = capsys.readouterr().out
    # (the 10 repeated rows all belong to missing photos)
    assert 'skipped 7091 x missing image\n' in printed
    ann = tmp_path / 'b' / 'annotations'
    counts = [read(ann / f'{s}.json')['metainfo']['num_images']
              for s in ('train', 'val', 'test')]
    assert counts == [800, 100, 100]


def normalised_words(caption: str):
    # Independent of the tokenizer's code: same rule, written again.
    return re.sub(r'[^a-z0-9\s]', ' ', caption.lower()).split()


def test_build_vocab_on_flickr8k(flickr8k, capsys):
    ann = flickr8k / 'annotations'
    stats_path = flickr8k / 'vocab_stats.json'
    assert run_tool('tools/build_vocab.py', [
        ann / 'train.json', '--coverage-ann', ann / 'test.json',
        '--stats-out', stats_path]) == 0
    print(capsys.readouterr().out)
    stats = read(stats_path)
    counts = Counter(w for e in read(ann / 'train.json')['data_list']
                     for w in normalised_words(e['caption']))
    vocab = {w for w, c in counts.items() if c >= 5}
    assert stats['vocab_words'] == len(vocab) == 2829
    assert stats['vocab_size'] == len(vocab) + 3
    test_words = [w for e in read(ann / 'test.json')['data_list']
                  for c in e['captions'] for w in normalised_words(c)]
    covered = sum(w in vocab for w in test_words) / len(test_words)
    held_out = stats['held_out'][str(ann / 'test.json')]
    assert held_out['token_coverage'] == pytest.approx(covered, abs=1e-12)
    assert held_out['token_coverage'] > 0.96
    assert osp.isfile(flickr8k / 'tokenizer.json')


def test_coco_captions_conversion(shared_data, tmp_path):
    from pycocotools.coco import COCO
    assert run_tool('tools/data/convert_captions.py', [
        osp.join(shared_data, 'coco-val2014-captions',
                 'captions_val2014_subset.json'), '--out', tmp_path,
        '--image-prefix', 'val2014/', '--split', 'rest,500,500']) == 0
    ann = tmp_path / 'annotations'
    val = read(ann / 'val.json')['data_list']
    assert len(val) == 500
    assert val[0]['file_name'].startswith('val2014/COCO_val2014_')
    assert int(val[0]['file_name'][-16:-4]) == int(val[0]['image_id'])
    total = sum(read(ann / f'{s}.json')['metainfo']['num_captions']
                for s in ('train', 'val', 'test'))
    assert total == 24019
    coco = COCO(str(ann / 'test_gt.json'))
    assert len(coco.getImgIds()) == 500


def test_frequent_nouns_on_coco_overlap(shared_data, tmp_path, capsys):
    from pcm_plugin.models.concept_bank import default_concept_words
    out = tmp_path / 'nouns.txt'
    assert run_tool('tools/build_concepts.py', [
        'nouns', osp.join(shared_data, 'coco-val2014-captions',
                          'captions_val2014_subset.json'),
        '--out', out]) == 0
    print(capsys.readouterr().out)
    words = out.read_text().split('\n')[:-1]
    assert len(words) == 446 and words == sorted(words)
    overlap = set(words) & set(default_concept_words())
    # 352 of 446 when written (heuristic, 24k val captions vs the official
    # list from the full training corpus); guard against regressions.
    assert len(overlap) >= 340
    assert {'dog', 'man', 'pizza', 'giraffe', 'toilet'} <= overlap
