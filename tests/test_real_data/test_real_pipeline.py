"""The pipeline on real data nobody here wrote (``../shared/data``).

* the official concept banks inside ``configs/pcm_coco.py``'s PCMMixup, with
  a CLIP head of the real ViT-B/32 shapes;
* the 1,000 Flickr8k JPEGs through ``tools/extract_features.py``;
* (slow) Flickr8k captions -> tiny diffusion model -> features -> training
  -> test on the real photos -> the metric against their real references;
* bad input made by editing copies of the real files.

Tools run through their ``main(argv)`` in this process, as their command
lines would run them (``tests.helpers.call_tool``), on one torch thread as
``OMP_NUM_THREADS=1`` gives: on two cores shared with other jobs, torch's
default of one intra-op thread per core makes these tiny models 10-40x
slower (threads spin-wait on each other).
``shared_data`` (tests/conftest.py) skips where ../shared/data is absent.
"""
import glob
import json
import os
import os.path as osp
import re
import subprocess

import numpy as np
import pytest

from tests import helpers
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.real_data

BANK_DIMS = {'B32': 512, 'L14': 768}
METRIC_KEYS = {'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L',
               'CIDEr'}


def run(tool_run, *args) -> subprocess.CompletedProcess:
    """``python <args>`` run in-process by ``tool_run`` (the
    ``tool_in_process`` fixture); it must succeed."""
    proc = tool_run(args[0], args[1:], check=False)
    assert proc.returncode == 0, (args[0], proc.stdout[-2000:],
                                  proc.stderr[-4000:])
    return proc


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    """The ``summary: {json}`` line the image tools print."""
    line, = (s for s in proc.stdout.splitlines() if s.startswith('summary: '))
    return json.loads(line[len('summary: '):])


tool_main = helpers.tool_main


def read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def write(path, obj) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f)
    return str(path)


def clip_args(tiny_clip) -> list:
    name, ckpt = tiny_clip
    return ['--clip-model', name, '--clip-checkpoint', ckpt,
            '--model-config', osp.join(osp.dirname(ckpt), f'{name}.json')]


# -- the official banks in configs/pcm_coco.py's PCMMixup ------------------

@pytest.fixture(scope='module')
def official_banks(shared_data, tmp_path_factory) -> dict:
    """Both official pickles imported with ``build_concepts.py``'s code."""
    from pcm_plugin.data_prep.official_bank import (
        official_bank_meta,
        read_official_bank,
    )
    from pcm_plugin.models.concept_bank import save_concept_bank
    out = tmp_path_factory.mktemp('banks')
    paths = {}
    for key in BANK_DIMS:
        pickled = osp.join(shared_data, 'pcm-net-official',
                           f'coco400_embeddings_ViT-{key}_with_ensemble'
                           '.pickle')
        words, embeddings = read_official_bank(pickled)
        paths[key] = str(out / f'official_{key}.npz')
        save_concept_bank(paths[key], words, embeddings,
                          official_bank_meta(pickled, embeddings))
    return paths


@pytest.fixture(scope='module')
def vit_b32_head(tmp_path_factory) -> str:
    """``ln_post`` + ``proj`` of a random full-size open_clip ViT-B/32."""
    import open_clip
    import torch

    from pcm_plugin.models.clip_head import HEAD_KEYS
    torch.manual_seed(0)
    state = open_clip.create_model('ViT-B-32', pretrained=None).state_dict()
    head = {k: state[k].clone() for k in HEAD_KEYS}
    assert head['visual.proj'].shape == (768, 512)
    path = str(tmp_path_factory.mktemp('head') / 'vit_b32_head.pt')
    torch.save(head, path)
    return path


def pcm_coco_mixup(concept_bank: str, clip_head: str) -> dict:
    """``model.mixup`` of configs/pcm_coco.py pointed at these files."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'pcm_coco.py'))
    return dict(cfg.model.mixup, concept_bank=concept_bank,
                clip_head=clip_head)


def build(cfg: dict):
    import pcm_plugin  # noqa: F401  registers PCMMixup
    from pcm_plugin.registry import MODELS
    return MODELS.build(cfg)


def patch_onto(direction, proj):
    """A raw patch token whose ``ln_post(x) @ proj`` points at ``direction``.

    ``x @ proj = direction`` with ``sum(x) = 0``: LayerNorm (weight 1, bias
    0 at open_clip's init) then only rescales x, so the direction survives.
    """
    import torch
    system = torch.cat([proj, torch.ones(proj.shape[0], 1)], dim=1)
    target = torch.cat([direction, torch.zeros(1)])  # (Dg + 1, )
    return target @ torch.linalg.pinv(system)  # (Dv, )


def test_official_b32_bank_plugs_into_pcm_coco_mixup(official_banks,
                                                     vit_b32_head):
    import torch

    from pcm_plugin.models.concept_bank import (
        default_concept_words,
        load_concept_bank,
    )
    mixup = build(pcm_coco_mixup(official_banks['B32'], vit_b32_head))
    mixup.eval()
    words, emb, _ = load_concept_bank(official_banks['B32'])
    assert mixup.concept_words == words == default_concept_words()
    emb = torch.as_tensor(emb)
    dog, pizza = words.index('dog'), words.index('pizza')
    torch.manual_seed(0)
    patches = torch.randn(2, 49, 768)
    glob_feat = torch.randn(2, 512)
    glob_feat[0], glob_feat[1] = emb[dog], 3 * emb[pizza]
    head = torch.load(vit_b32_head, weights_only=True)
    patches[0, 7] = 40 * patch_onto(emb[dog], head['visual.proj'])
    with torch.no_grad():
        out = mixup(patches, glob_feat)

    retrieved = [[words[i] for i in row] for row in out['concept_idx']]
    assert [row[0] for row in retrieved] == ['dog', 'pizza']
    # The top-5 are the bank's nearest rows by cosine, computed here again.
    unit = emb / emb.norm(dim=1, keepdim=True)
    for b in range(2):
        cos = unit @ (glob_feat[b] / glob_feat[b].norm())  # (446, )
        assert out['concept_idx'][b].tolist() == \
            cos.argsort(descending=True)[:5].tolist()
    # The patch built to match 'dog' through the head matches the 5
    # retrieved concepts better than any random patch: all M = 5 (patch,
    # concept) pairs fall on it.
    assert out['replace_mask'][0].nonzero().flatten().tolist() == [7]
    assert 1 <= out['replace_mask'][1].sum() <= 5
    assert out['tokens'].shape == (2, 1 + 2 * 49, 512)
    assert torch.equal(out['token_mask'][:, 50:], out['replace_mask'])


def test_l14_bank_in_the_b32_config_is_a_dimension_error(official_banks,
                                                          vit_b32_head):
    with pytest.raises(ValueError, match=r"official_L14\.npz: concept "
                       r"embeddings are 768-d but the model's global_dim is "
                       r'512'):
        build(pcm_coco_mixup(official_banks['L14'], vit_b32_head))


@pytest.mark.parametrize('edit', ['duplicate', 'nan'])
def test_edited_official_bank_in_the_config_names_the_word(
        official_banks, vit_b32_head, tmp_path, edit):
    with np.load(official_banks['B32'], allow_pickle=False) as raw:
        words, emb = list(raw['words']), raw['embeddings'].copy()
        meta = raw['meta']
    if edit == 'duplicate':
        words[6] = words[5]
        message = f"duplicate concept word '{words[5]}'"
    else:
        emb[10, 100] = np.nan
        message = f"embedding of word '{words[10]}' (row 10) has NaN"
    path = str(tmp_path / f'{edit}.npz')
    np.savez(path, words=np.asarray(words), embeddings=emb, meta=meta)
    with pytest.raises(ValueError, match=re.escape(f'{path}: {message}')):
        build(pcm_coco_mixup(path, vit_b32_head))


# -- the 1,000 real JPEGs through tools/extract_features.py ----------------

def flickr_photos(shared_data: str) -> str:
    return osp.join(shared_data, 'flickr8k', 'images')


def by_hand_features(tiny_clip, photo: str):
    """open_clip's own transform and forward, patch tokens via a hook."""
    import open_clip
    import torch
    from PIL import Image
    name, ckpt = tiny_clip
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=ckpt)
    captured = []
    model.visual.ln_post.register_forward_pre_hook(
        lambda module, args: captured.append(args[0]))
    with torch.no_grad(), Image.open(photo) as image:
        glob_feat = model.encode_image(preprocess(image)[None])
    return captured[0][0, 1:].numpy(), glob_feat[0].numpy()


def test_extract_features_over_the_1000_flickr8k_photos(shared_data,
                                                        tiny_clip, tmp_path,
                                                        tool_in_process):
    from pcm_plugin.datasets import FeatureStore
    photos = flickr_photos(shared_data)
    names = sorted(os.listdir(photos))
    assert len(names) == 1000 and all(n.endswith('.jpg') for n in names)
    ann = write(tmp_path / 'photos.json', dict(
        metainfo=dict(dataset='flickr8k', split='test'),
        data_list=[dict(image_id=str(k + 1), file_name=n, captions=[])
                   for k, n in enumerate(names)]))
    out = tmp_path / 'features'
    proc = run(tool_in_process, 'tools/extract_features.py', ann,
               '--image-dir', photos, '--out-dir', out, *clip_args(tiny_clip),
               '--batch-size', 64, '--workers', 0, '--no-progress')
    summary = summary_of(proc)
    assert (summary['extracted'], summary['skipped_bad'],
            summary['num_items']) == (1000, 0, 1000)

    store = FeatureStore(str(out))
    assert store.ids == [str(k + 1) for k in range(1000)]
    assert store.patch_shape == (49, 48) and store.global_dim == 32
    assert not store.meta.get('skipped')
    assert not glob.glob(str(out / '*.skipped.json'))
    patch = np.load(out / 'shard-00000.patch.npy')
    glob_feat = np.load(out / 'shard-00000.global.npy')
    assert patch.shape == (1000, 49, 48) and glob_feat.shape == (1000, 32)
    assert np.isfinite(patch).all() and np.isfinite(glob_feat).all()
    assert np.isnan(np.load(out / 'shard-00000.cos.npy')).all()
    for k in (0, 999):  # real JPEG decoding = open_clip's own path
        want_patch, want_glob = by_hand_features(
            tiny_clip, osp.join(photos, names[k]))
        item = store.get(str(k + 1))
        np.testing.assert_allclose(item['patch'], want_patch, rtol=2e-3,
                                   atol=2e-3)
        np.testing.assert_allclose(item['global_feat'], want_glob,
                                   rtol=2e-3, atol=2e-3)


# -- slow: captions -> diffusion -> features -> train -> test --------------

def convert_flickr8k(tool_run, shared_data: str, out) -> dict:
    """50 train / 50 test photos (the rest to val, unused); 250 captions."""
    photos = flickr_photos(shared_data)
    proc = run(tool_run, 'tools/data/convert_captions.py',
               osp.join(shared_data, 'flickr8k', 'captions.txt'), '--out',
               out, '--image-dir', photos, '--skip-bad', '--split',
               '50,rest,50', '--seed', 0)
    assert 'skipped 7091 x missing image' in proc.stdout
    ann = out / 'annotations'
    train = read(ann / 'train.json')['data_list']
    test = read(ann / 'test.json')['data_list']
    assert len(train) == 250 and len(test) == 50
    assert all(osp.isfile(osp.join(photos, e['file_name'])) for e in test)
    assert not {e['source_file_name'] for e in train} & {
        e['file_name'] for e in test}
    gt = read(ann / 'test_gt.json')
    assert sorted(i['id'] for i in gt['images']) == sorted(
        int(e['image_id']) for e in test)
    assert len(gt['annotations']) == sum(len(e['captions']) for e in test)
    return dict(train=train, test=test, train_ann=str(ann / 'train.json'),
                test_ann=str(ann / 'test.json'),
                test_gt=str(ann / 'test_gt.json'))


def synthesize(tool_run, data: dict, model_dir: str, out) -> str:
    from PIL import Image
    # 2 steps at 64 px, no classifier-free guidance (it only doubles the
    # cost): every caption still goes through the diffusers pipeline.
    run(tool_run, 'tools/synthesize.py', data['train_ann'], '--model-dir',
        model_dir, '--out-dir', out, '--steps', 2, '--size', 64,
        '--guidance', 1.0, '--batch-size', 25, '--no-progress')
    manifest = read(out / 'manifest.json')
    ids = [e['image_id'] for e in data['train']]
    assert manifest['complete'] and manifest['num_images'] == 250
    assert [i['image_id'] for i in manifest['images']] == ids
    assert sorted(os.listdir(out / 'images')) == sorted(f'{i}.png'
                                                        for i in ids)
    with Image.open(out / 'images' / f'{ids[0]}.png') as image:
        assert image.size == (64, 64)
    return str(out / 'images')


def extract(tool_run, ann: str, image_dir: str, out, tiny_clip,
            entries) -> str:
    from pcm_plugin.datasets import FeatureStore
    summary = summary_of(run(
        tool_run, 'tools/extract_features.py', ann, '--image-dir', image_dir,
        '--out-dir', out, *clip_args(tiny_clip), '--workers', 0,
        '--no-progress'))
    assert (summary['extracted'], summary['skipped_bad']) == (len(entries),
                                                              0)
    store = FeatureStore(str(out))
    assert store.ids == [str(e['image_id']) for e in entries]
    assert store.patch_shape == (49, 48) and store.global_dim == 32
    cos = np.array([store.get(i)['clip_cos'] for i in store.ids])
    is_train = 'caption' in entries[0]  # one caption -> CLIP cosine
    assert (np.isfinite(cos) if is_train else np.isnan(cos)).all()
    return str(out)


def build_text_side(tool_run, data: dict, root, tiny_clip) -> dict:
    from pcm_plugin.models.concept_bank import load_concept_bank
    stats = root / 'vocab_stats.json'
    run(tool_run, 'tools/build_vocab.py', data['train_ann'],
        '--coverage-ann', data['test_ann'], '--stats-out', stats)
    stats = read(stats)
    assert stats['num_captions'] == 250 and stats['vocab_words'] > 20
    assert 0.3 < stats['held_out'][data['test_ann']]['token_coverage'] < 1
    bank = root / 'concepts.npz'
    run(tool_run, 'tools/build_concepts.py', 'encode', *clip_args(tiny_clip),
        '--out', bank)
    words, emb, _ = load_concept_bank(str(bank))
    assert len(words) == 446 and emb.shape == (446, 32)
    return dict(tokenizer=stats['tokenizer'], concept_bank=str(bank))


def scores_from_test_log(work_dir) -> dict:
    """The metrics mmengine's LoggerHook writes to ``<run>/<run>.json``."""
    logs = glob.glob(osp.join(str(work_dir), '*', '*.json'))
    assert len(logs) == 1, logs
    return read(logs[0])


@pytest.mark.slow
def test_flickr8k_captions_to_real_photo_metrics(shared_data, tiny_clip,
                                                 tmp_path, tool_in_process):
    from pcm_plugin.evaluation.caption_metric import score_captions
    from pcm_plugin.models.tokenizer import load_caption_tokenizer
    from pcm_plugin.testing import build_tiny_sd_pipeline
    from pcm_plugin.testing.toy_features import toy_config
    tool_run = tool_in_process
    data = convert_flickr8k(tool_run, shared_data, tmp_path / 'flickr8k')
    images = synthesize(tool_run, data,
                        build_tiny_sd_pipeline(str(tmp_path / 'sd')),
                        tmp_path / 'synth')
    world = dict(
        train_ann=data['train_ann'], test_ann=data['test_ann'],
        test_gt=data['test_gt'], clip_head=tiny_clip[1],
        train_feats=extract(tool_run, data['train_ann'], images,
                            tmp_path / 'f_train', tiny_clip, data['train']),
        test_feats=extract(tool_run, data['test_ann'],
                           flickr_photos(shared_data), tmp_path / 'f_test',
                           tiny_clip, data['test']),
        **build_text_side(tool_run, data, tmp_path, tiny_clip))

    cfg = toy_config(world, str(tmp_path / 'work'), max_epochs=1)
    # toy_config's peak lr (factor 2) collapses this 1-epoch model to empty
    # captions, which would make the metric check below vacuous.
    cfg.param_scheduler[0].factor = 0.5
    cfg.test_evaluator = dict(type='COCOCaptionMetric',
                              ann_file=data['test_gt'])  # all 4 scorers
    config = str(tmp_path / 'flickr8k_pcm.py')
    cfg.dump(config)
    proc = run(tool_run, 'tools/train.py', config, '--no-validate',
               '--cfg-options', 'default_hooks.checkpoint.save_best=None')
    # 250 captions, batch 8, drop_last: 31 iterations.
    assert 'Epoch(train) [1][31/31]' in proc.stdout + proc.stderr
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    preds_file = tmp_path / 'preds.json'  # COCO results format
    run(tool_run, 'tools/test.py', config, ckpt, '--out', preds_file,
        '--out-item', 'pred', '--work-dir', tmp_path / 'test')

    preds = {p['image_id']: p['caption'] for p in read(preds_file)}
    assert sorted(map(str, preds)) == sorted(str(e['image_id'])
                                             for e in data['test'])
    assert any(preds.values()), 'only empty captions: nothing to score'
    vocab = set(load_caption_tokenizer(world['tokenizer']).get_vocab())
    assert all(isinstance(c, str) and set(c.split()) <= vocab
               for c in preds.values())
    metrics = scores_from_test_log(tmp_path / 'test')
    assert METRIC_KEYS <= set(metrics)
    # x100, as papers report them (PAPER_SCALE): CIDEr tops out at 1000,
    # the others at 100.
    assert all(0 <= metrics[k] <= (1000 if k == 'CIDEr' else 100)
               for k in METRIC_KEYS)
    assert any(metrics[k] > 0 for k in METRIC_KEYS)
    # Scored against the real references (test.json's, written by the
    # converter next to the test_gt.json the metric read).
    refs = {int(e['image_id']): e['captions'] for e in data['test']}
    again = score_captions({int(k): c for k, c in preds.items()}, refs,
                           ('bleu', 'cider'))
    assert again == pytest.approx({k: metrics[k] for k in again}, abs=1e-9)


# -- bad input: edited copies of the real files -----------------------------

def captions_lines(shared_data: str) -> list:
    path = osp.join(shared_data, 'flickr8k', 'captions.txt')
    with open(path, encoding='utf-8', newline='') as f:
        return f.read().splitlines()


def write_lines(path, lines) -> str:
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


def convert(argv, capsys):
    code = tool_main('tools/data/convert_captions.py')([str(a)
                                                         for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def total(out_dir, key: str) -> int:
    ann = out_dir / 'annotations'
    return sum(read(ann / f'{s}.json')['metainfo'][key]
               for s in ('train', 'val', 'test'))


def test_malformed_row_in_real_captions(shared_data, tmp_path, capsys):
    lines = captions_lines(shared_data)
    image = lines[99].split(',')[0]
    lines.insert(99, f'{image},a dog,running')  # now line 100
    bad = write_lines(tmp_path / 'captions.txt', lines)
    code, _, err = convert([bad, '--out', tmp_path / 'a'], capsys)
    assert code == 1
    assert (f"{bad}:100: expected 2 fields (image,caption), got 3: ['{image}'"
            in err and 'quote captions that contain commas' in err)
    code, out, _ = convert([bad, '--out', tmp_path / 'b', '--skip-bad',
                            '--duplicates', 'keep'], capsys)
    assert code == 0 and 'skipped 1 x malformed row' in out
    assert total(tmp_path / 'b', 'num_captions') == 40455


def test_missing_image_named_in_real_captions(shared_data, tmp_path,
                                              capsys):
    photos = flickr_photos(shared_data)
    shipped = set(os.listdir(photos))
    lines = captions_lines(shared_data)
    lines = lines[:1] + [r for r in lines[1:]
                         if r.split(',')[0] in shipped]
    assert len(lines) == 5001
    lines[41] = '9999999999_0000000000.jpg,' + lines[41].split(',', 1)[1]
    bad = write_lines(tmp_path / 'captions.txt', lines)
    code, _, err = convert([bad, '--out', tmp_path / 'a', '--image-dir',
                            photos], capsys)
    assert code == 1
    assert (f'{bad}:42: image 9999999999_0000000000.jpg not found in '
            f'{photos}') in err
    code, out, _ = convert([bad, '--out', tmp_path / 'b', '--image-dir',
                            photos, '--skip-bad'], capsys)
    assert code == 0 and 'skipped 1 x missing image' in out
    assert total(tmp_path / 'b', 'num_images') == 1000
    assert total(tmp_path / 'b', 'num_captions') == 4999


@pytest.mark.parametrize('same', ['id', 'file'])
def test_image_listed_twice_in_real_coco_captions(shared_data, tmp_path,
                                                  capsys, same):
    coco = read(osp.join(shared_data, 'coco-val2014-captions',
                         'captions_val2014_subset.json'))
    again = dict(coco['images'][5])
    if same == 'file':
        again['id'] = 999999999  # another id, the same photo
    coco['images'].append(again)
    bad = write(tmp_path / 'captions_val2014.json', coco)
    key = again['id'] if same == 'id' else again['file_name']
    code, _, err = convert([bad, '--out', tmp_path / 'a'], capsys)
    assert code == 1
    assert (f'{bad}: images[4800]: image {same} {key} '
            f'({again["file_name"]}) was already listed at {bad}: '
            'images[5]') in err
    code, out, _ = convert([bad, '--out', tmp_path / 'b', '--skip-bad',
                            '--split', 'rest,500,500'], capsys)
    assert code == 0 and 'skipped 1 x image listed twice' in out
    assert total(tmp_path / 'b', 'num_images') == 4800
    assert total(tmp_path / 'b', 'num_captions') == 24019


def test_real_photo_listed_twice_for_extraction(shared_data, tiny_clip,
                                                tmp_path):
    names = sorted(os.listdir(flickr_photos(shared_data)))[:3]
    entries = [dict(image_id=str(k + 1), file_name=n, captions=[])
               for k, n in enumerate(names)]
    entries.append(dict(entries[1]))
    ann = write(tmp_path / 'test.json', dict(metainfo={},
                                             data_list=entries))
    with pytest.raises(SystemExit, match=re.escape(
            f"error: {ann}: data_list[3]: image_id '2' appears twice")):
        tool_main('tools/extract_features.py')([
            ann, '--image-dir', flickr_photos(shared_data), '--out-dir',
            str(tmp_path / 'features'), *clip_args(tiny_clip)])
