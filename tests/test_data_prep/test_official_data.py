"""The official release in and out: importing gives exactly what the
official loader gives (features, token ids, loss weight), SynC records find
their new image's folder, bad input is refused before anything is written,
and export -> import is the identity on a training set."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from pcm_plugin.data_prep.official_data import (
    export_items,
    export_official_annotations,
    export_official_results,
    import_official_annotations,
    import_sync_annotations,
)
from pcm_plugin.data_prep.official_features import (
    export_official_features,
    import_official_features,
)
from pcm_plugin.data_prep.safe_pickle import UnsafePickleError
from pcm_plugin.datasets import FeatureStore, SynthCaptionDataset
from pcm_plugin.datasets.transforms import LoadCLIPFeatures, PackCaptionInputs
from pcm_plugin.models.losses.clip_weighted_ce import clip_sample_weights
from pcm_plugin.models.mixup_selection import unit
from pcm_plugin.models.tokenizer import (
    encode_captions,
    load_caption_tokenizer,
)
from tests.official_release import (
    ALPHA,
    RunsCode,
    make_release,
    official_sample,
    record,
    write_npz,
    write_pickle,
)

CAPTIONS = ['a dog on the grass', 'a red cat', 'the UNK on a dog',
            'a cat on the red grass']
SPLITS = [0, 0, 1, 1]
COS = [0.31, -0.02, 0.47, 0.2]


def to_official(ids: torch.Tensor) -> np.ndarray:
    """This plugin's ids as official ones (j + 2 -> j; 0 stays)."""
    return torch.where(ids > 0, ids - 2, ids).numpy()


def plugin_samples(ann_file, feature_dir, tokenizer_file):
    """What this plugin's dataset, tokenizer and loss make of each entry."""
    ds = SynthCaptionDataset(ann_file=ann_file, feature_dir=feature_dir,
                             pipeline=[LoadCLIPFeatures(),
                                       PackCaptionInputs()])
    tokenizer = load_caption_tokenizer(tokenizer_file)
    for k in range(len(ds)):
        item = ds[k]
        sample = item['data_samples']
        inputs, targets, _ = encode_captions(tokenizer, [sample.gt_caption])
        glob = item['inputs']['global_feat'].float()
        weight = clip_sample_weights(
            torch.tensor([sample.clip_cos], dtype=torch.float32),
            alpha=ALPHA)[0]
        yield dict(patch=item['inputs']['patch_feats'].float().numpy(),
                   glob=glob.numpy(), norm=unit(glob).numpy(),
                   tokens=to_official(inputs[0]),
                   targets=to_official(targets[0]), weight=weight)


def assert_same_as_official(ours, rec, feats):
    att, glob, norm, tokens, targets, weight = official_sample(rec, feats)
    np.testing.assert_array_equal(ours['patch'], att)
    np.testing.assert_array_equal(ours['glob'], glob)
    np.testing.assert_allclose(ours['norm'], norm, rtol=1e-6, atol=1e-7)
    n = len(ours['tokens'])  # this plugin pads its batch, not to 21
    np.testing.assert_array_equal(ours['tokens'], tokens[:n])
    assert (tokens[n:] == 0).all()
    # the plugin's ignore index (-100) where the official pads with -1
    np.testing.assert_array_equal(np.maximum(ours['targets'], -1),
                                  targets[:n])
    assert (targets[n:] == -1).all()
    assert torch.equal(ours['weight'], weight)


@pytest.fixture
def release(tmp_path):
    return make_release(str(tmp_path / 'release'), CAPTIONS, SPLITS, COS)


def import_train(release, out):
    written = import_official_annotations(
        release['train'], release['vocabulary'], out, split='train')
    summary = import_official_features(
        written['annotation'], feats_folder=release['feats'],
        out_dir=osp.join(out, 'features'), shard_size=3)
    return written, summary


def test_import_gives_what_the_official_loader_gives(release, tmp_path):
    out = str(tmp_path / 'data')
    written, summary = import_train(release, out)
    assert summary['imported'] == 4 and summary['inexact_fp16'] == 0
    entries = json.load(open(written['annotation']))['data_list']
    assert [e['caption'] for e in entries] == CAPTIONS
    assert [e['split_id'] for e in entries] == SPLITS
    samples = list(plugin_samples(written['annotation'],
                                  osp.join(out, 'features'),
                                  written['tokenizer']))
    for ours, rec in zip(samples, release['records']):
        assert_same_as_official(ours, rec, release['feats'])
    # the negative cosine: weight 0 on both sides; 0.47 * 2.5 clamps to 1
    assert [float(s['weight']) for s in samples][1:3] == [0.0, 1.0]


def test_import_resumes_and_keeps_complete_shards(release, tmp_path):
    out = str(tmp_path / 'data')
    written, _ = import_train(release, out)
    shard = osp.join(out, 'features', 'shard-00000.patch.npy')
    before = os.stat(shard).st_mtime_ns
    again = import_official_features(
        written['annotation'], feats_folder=release['feats'],
        out_dir=osp.join(out, 'features'), shard_size=3)
    assert again['imported'] == 0 and again['skipped_existing'] == 4
    assert os.stat(shard).st_mtime_ns == before
    with pytest.raises(ValueError, match='shard_size'):
        import_official_features(
            written['annotation'], feats_folder=release['feats'],
            out_dir=osp.join(out, 'features'), shard_size=2)


@pytest.mark.parametrize('score', ['siglip2-cosine', 'as-official'])
def test_sync_record_reads_its_new_images_own_folder(release, tmp_path,
                                                     score):
    # SynC gives caption 0 image 6000003 (folder sp1) but keeps split_id 0
    refined = [dict(release['records'][0], image_id='6000003',
                    clipscore=np.float32(5 * 0.12)),
               dict(release['records'][2], clipscore=np.float32(5 * 0.3))]
    path = write_pickle(str(tmp_path / 'sync.pickle'), refined)
    assert not osp.exists(osp.join(release['feats'] + '_sp0',
                                   '6000003.npz'))  # the §1.9 pitfall
    out = str(tmp_path / 'data')
    import_official_annotations(release['train'], release['vocabulary'], out,
                                split='train')
    written = import_sync_annotations(path, release['train'],
                                      release['vocabulary'], out, score=score)
    assert written['moved'] == 1
    entries = json.load(open(written['annotation']))['data_list']
    assert [(e['image_id'], e['split_id'], e.get('record_split_id'))
            for e in entries] == [('6000003', 1, 0), ('6000002', 1, None)]
    import_official_features(written['annotation'],
                             feats_folder=release['feats'],
                             out_dir=str(tmp_path / 'sync_feats'))
    samples = list(plugin_samples(written['annotation'],
                                  str(tmp_path / 'sync_feats'),
                                  osp.join(out, 'tokenizer.json')))
    fixed = [dict(refined[0], split_id=1), refined[1]]
    if score == 'as-official':  # the official loss on the file as it is
        for ours, rec in zip(samples, fixed):
            assert_same_as_official(ours, rec, release['feats'])
    else:  # the SigLIP2 cosine itself
        assert [e['clip_cos'] for e in entries] == [
            float(np.float32(0.6) / np.float32(5)),
            float(np.float32(1.5) / np.float32(5))]
        att = official_sample(fixed[0], release['feats'])[0]
        np.testing.assert_array_equal(samples[0]['patch'], att)


def test_sync_image_missing_from_the_original_is_named(release, tmp_path):
    refined = [dict(release['records'][0], image_id='6999999')]
    path = write_pickle(str(tmp_path / 'sync.pickle'), refined)
    with pytest.raises(ValueError, match='6999999'):
        import_sync_annotations(path, release['train'],
                                release['vocabulary'], str(tmp_path / 'o'))
    assert not osp.exists(tmp_path / 'o')


def test_truncated_npz_is_named_and_no_shard_written(release, tmp_path):
    out = str(tmp_path / 'data')
    written = import_official_annotations(
        release['train'], release['vocabulary'], out, split='train')
    bad = osp.join(release['feats'] + '_sp1', '6000003.npz')
    data = open(bad, 'rb').read()
    with open(bad, 'wb') as f:
        f.write(data[:len(data) // 2])
    store = osp.join(out, 'features')
    with pytest.raises(ValueError, match='6000003.npz: truncated'):
        import_official_features(written['annotation'],
                                 feats_folder=release['feats'],
                                 out_dir=store, shard_size=2)
    # the first shard is whole; the one holding the bad file is absent
    assert sorted(f for f in os.listdir(store) if 'shard-00001' in f) == []
    assert not osp.exists(osp.join(store, 'index.json'))
    write_npz(release['feats'], '6000003', 1)  # fixed: the rerun resumes
    summary = import_official_features(written['annotation'],
                                       feats_folder=release['feats'],
                                       out_dir=store, shard_size=2)
    assert (summary['imported'], summary['skipped_existing']) == (2, 2)


def test_missing_image_is_named(release, tmp_path):
    out = str(tmp_path / 'data')
    written = import_official_annotations(
        release['train'], release['vocabulary'], out, split='train')
    os.remove(osp.join(release['feats'] + '_sp0', '6000001.npz'))
    with pytest.raises(FileNotFoundError, match='image 6000001: .*_sp0'):
        import_official_features(written['annotation'],
                                 feats_folder=release['feats'],
                                 out_dir=osp.join(out, 'features'))


def test_pickle_that_runs_code_is_refused(release, tmp_path):
    marker = tmp_path / 'ran'
    path = write_pickle(str(tmp_path / 'evil.pkl'),
                        [dict(image_id='1', payload=RunsCode(marker))])
    out = tmp_path / 'out'
    with pytest.raises(UnsafePickleError, match='refusing to load global '
                       '(posix|nt).system'):
        import_official_annotations(path, release['vocabulary'], str(out),
                                    split='train')
    assert not marker.exists() and not out.exists()


def test_inconsistent_rows_and_unknown_words_are_refused(release, tmp_path):
    rec = record(6000000, 'a dog', 0, 0.5)
    rec['tokens_ids'][0, 2] = 5  # input 'the' where the target says 'dog'
    path = write_pickle(str(tmp_path / 'bad.pkl'), [rec])
    with pytest.raises(ValueError, match='record 0 .*not 0 followed by'):
        import_official_annotations(path, release['vocabulary'],
                                    str(tmp_path / 'o'), split='train')
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('a\nt-shirt\n')
    path = write_pickle(str(tmp_path / 'hyphen.pkl'), [dict(
        image_id='1', split_id=0, clipscore=1.0,
        tokens_ids=np.array([[0, 1, 2, 0]]),
        target_ids=np.array([[1, 2, 0, -1]]))])
    with pytest.raises(ValueError, match="'a t-shirt' tokenizes"):
        import_official_annotations(path, str(vocab), str(tmp_path / 'o'),
                                    split='train')
    assert not (tmp_path / 'o').exists()


def test_test_split_reads_real_images_from_the_folder_itself(release,
                                                             tmp_path):
    path = write_pickle(str(tmp_path / 'test.pkl'),
                        [dict(image_id='391895'), dict(image_id='60623')])
    written = import_official_annotations(path, release['vocabulary'],
                                          str(tmp_path / 'o'), split='test')
    data = json.load(open(written['annotation']))['data_list']
    assert data == [dict(image_id='391895'), dict(image_id='60623')]
    real = str(tmp_path / 'mscoco_feats')  # GT features: no _sp folder
    for image_id in ('391895', '60623'):
        write_npz(real, image_id)
    import_official_features(written['annotation'], feats_folder=real,
                             out_dir=str(tmp_path / 'store'))
    store = FeatureStore(str(tmp_path / 'store'))
    for image_id in ('391895', '60623'):
        content = np.load(osp.join(real, f'{image_id}.npz'))
        item = store.get(image_id)
        np.testing.assert_array_equal(item['patch'], content['features'])
        np.testing.assert_array_equal(item['global_feat'],
                                      content['g_feature'][0])
    again = str(tmp_path / 'exported')
    export_official_features(str(tmp_path / 'store'),
                             export_items(written['annotation']), again)
    assert sorted(os.listdir(again)) == ['391895.npz', '60623.npz']


def test_export_import_round_trip_is_exact(toy_world, tmp_path):
    official = tmp_path / 'official'
    official.mkdir()
    pkl, vocab = str(official / 'train.pkl'), str(official / 'vocab.txt')
    export_official_annotations(toy_world['train_ann'],
                                toy_world['tokenizer'], pkl, vocab,
                                feature_dir=toy_world['train_feats'],
                                images_per_folder=40)
    feats = str(official / 'feats')
    export_official_features(toy_world['train_feats'],
                             export_items(toy_world['train_ann'],
                                          images_per_folder=40), feats)
    assert sorted(os.listdir(official)) == ['feats_sp0', 'feats_sp1',
                                            'train.pkl', 'vocab.txt']
    back = str(tmp_path / 'back')
    written = import_official_annotations(pkl, vocab, back, split='train')
    import_official_features(written['annotation'], feats_folder=feats,
                             out_dir=osp.join(back, 'features'))
    old = json.load(open(toy_world['train_ann']))['data_list']
    new = json.load(open(written['annotation']))['data_list']
    assert [e['caption'] for e in new] == [e['caption'] for e in old]
    store, again = (FeatureStore(toy_world['train_feats']),
                    FeatureStore(osp.join(back, 'features')))
    for e in new:
        a, b = store.get(e['image_id'], None), again.get(e['image_id'], None)
        assert np.array_equal(a['patch'], b['patch'])
        assert np.array_equal(a['global_feat'], b['global_feat'])
        assert np.float32(e['clip_cos']) == np.float32(a['clip_cos'])
    assert open(toy_world['tokenizer']).read() == open(
        written['tokenizer']).read()


def test_results_as_test_net_writes_them(tmp_path):
    preds = tmp_path / 'preds.json'
    preds.write_text(json.dumps([dict(image_id=1, caption='a dog'),
                                 dict(image_id=7, caption='a cat')]))
    ann = tmp_path / 'test.json'
    ann.write_text(json.dumps(dict(data_list=[dict(image_id='7'),
                                              dict(image_id='1')])))
    out = tmp_path / 'results' / '10.json'
    os.makedirs(out.parent)
    assert export_official_results(str(preds), str(out),
                                    ann_file=str(ann)) == 2
    assert out.read_text() == ('[{"image_id": 7, "caption": "a cat ."}, '
                               '{"image_id": 1, "caption": "a dog ."}]')


def round_trip_world(toy_world, root):
    """The toy world's training set exported and imported back."""
    os.makedirs(root)
    pkl, vocab = osp.join(root, 'train.pkl'), osp.join(root, 'vocab.txt')
    export_official_annotations(toy_world['train_ann'],
                                toy_world['tokenizer'], pkl, vocab,
                                feature_dir=toy_world['train_feats'])
    feats = osp.join(root, 'feats')
    export_official_features(toy_world['train_feats'],
                             export_items(toy_world['train_ann']), feats)
    written = import_official_annotations(pkl, vocab, root, split='train')
    import_official_features(written['annotation'], feats_folder=feats,
                             out_dir=osp.join(root, 'store'))
    return dict(toy_world, train_ann=written['annotation'],
                train_feats=osp.join(root, 'store'),
                tokenizer=written['tokenizer'])


def test_training_on_the_round_trip_equals_training_on_the_original(
        toy_world, tmp_path, one_torch_thread):
    from mmengine.runner import Runner

    from pcm_plugin.testing.toy_features import toy_config
    states, batches = {}, {}
    for name, world in (('original', toy_world), ('official', round_trip_world(
            toy_world, str(tmp_path / 'official')))):
        cfg = toy_config(world, str(tmp_path / name), max_epochs=1)
        cfg.train_cfg.val_interval = 10  # no validation
        cfg.experiment_name = f'{name}{id(tmp_path)}'
        runner = Runner.from_cfg(cfg)
        batches[name] = [(b['data_samples'][0].image_id,
                          b['data_samples'][0].clip_cos,
                          b['inputs']['patch_feats'][0].clone())
                         for b in runner.train_dataloader]
        runner.train()
        states[name] = runner.model.state_dict()
    for (i, c, p), (j, d, q) in zip(batches['original'], batches['official']):
        assert (i, c) == (j, d) and torch.equal(p, q)
    assert states['original'].keys() == states['official'].keys()
    for key, value in states['original'].items():
        assert torch.equal(value, states['official'][key]), key


def test_converted_checkpoint_on_imported_data_gives_official_logits(
        tmp_path):
    """The checkpoint converter and this importer agree: the converted
    model on imported features and tokens gives the official model's
    next-word logits on the official files."""
    from pcm_plugin.apis.inferencer import build_captioner
    from tests.test_apis import test_official as ckpt
    (tmp_path / 'ckpt').mkdir()
    W, bank, release_file, _ = ckpt.convert_test_checkpoint(
        tmp_path / 'ckpt', ckpt.WORDS)
    rel = make_release(str(tmp_path / 'release'),
                       ['a dog on the grass', 'the red dog'], [0, 1],
                       [0.3, 0.2], words=ckpt.WORDS,
                       dims=(ckpt.N, ckpt.DV, ckpt.DG))
    written, _ = import_train(rel, str(tmp_path / 'data'))
    model, _ = build_captioner(release_file, None)
    ours = load_caption_tokenizer(written['tokenizer'])
    assert ours.get_vocab() == model.tokenizer.get_vocab()
    store = FeatureStore(str(tmp_path / 'data' / 'features'))
    entries = json.load(open(written['annotation']))['data_list']
    for entry, rec in zip(entries, rel['records']):
        att, _, norm, tokens, _, _ = official_sample(rec, rel['feats'])
        n = len(entry['caption'].split()) + 1
        with torch.no_grad():
            expected = ckpt.official_forward(
                W, bank, torch.from_numpy(att)[None],
                torch.from_numpy(norm)[None],
                torch.from_numpy(tokens[:n])[None])
            item = store.get(entry['image_id'])
            memory, mask = model.encode(dict(
                patch_feats=torch.from_numpy(item['patch'])[None],
                global_feat=torch.from_numpy(item['global_feat'])[None]))
            ids = encode_captions(ours, [entry['caption']])[0]
            got = model.decoder(ids, memory, mask)
        cols = [0] + list(range(3, len(ckpt.WORDS) + 3))
        torch.testing.assert_close(got[..., cols], expected, rtol=1e-4,
                                   atol=1e-4)
