"""SynC re-pairing end to end: ``tools/refine_pairs.py`` and
pcm_plugin.data_prep.refine_pairs on a pool written in our formats."""
import itertools
import json
import os
import os.path as osp
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import REPO_ROOT, run_tool

WORDS = ('red green blue yellow circle square triangle star a small big '
         'and on the grass sand').split()


def captions(num: int, seed: int = 0):
    """``num`` distinct captions (of 64) in a seeded order."""
    combos = list(itertools.product(('small', 'big'), WORDS[:4], WORDS[4:8],
                                    ('grass', 'sand')))
    order = np.random.default_rng(seed).permutation(len(combos))[:num]
    return ['a {} {} {} on the {}'.format(*combos[i]) for i in order]


@pytest.fixture(scope='module')
def sentence_model(tmp_path_factory) -> str:
    from pcm_plugin.testing.tiny_sentence import build_tiny_sentence_model
    return build_tiny_sentence_model(
        str(tmp_path_factory.mktemp('sentence')), WORDS)


def write_pool(root, tiny_clip, texts, *, global_feats=None, seed=0):
    """A train annotation + a feature store of its images (ids 100+i)."""
    from pcm_plugin.datasets.feature_store import write_feature_store
    from pcm_plugin.utils.fileio import file_sha256
    name, ckpt = tiny_clip
    ids = [str(100 + i) for i in range(len(texts))]
    rng = np.random.default_rng(seed)
    if global_feats is None:
        global_feats = rng.standard_normal((len(texts), 32))
    store = osp.join(str(root), 'store')
    write_feature_store(
        store, ids, rng.standard_normal((len(texts), 4, 8)), global_feats,
        np.zeros(len(texts)), shard_size=16,
        meta=dict(clip_model=name, clip_checkpoint=ckpt,
                  checkpoint_sha256=file_sha256(ckpt)))
    ann = osp.join(str(root), 'train.json')
    with open(ann, 'w') as f:
        json.dump(dict(metainfo=dict(split='train'), data_list=[
            dict(image_id=i, caption=c) for i, c in zip(ids, texts)]), f)
    return ann, store


def tool_args(ann, store, out, tiny_clip, sentence_model, *extra):
    name, ckpt = tiny_clip
    return [ann, '--features', store, '--out', out, '--sentence-model',
            sentence_model, '--model-config',
            osp.join(osp.dirname(ckpt), f'{name}.json'), '--k', 4,
            '--k-back', 2, '--chunk-size', 8, '--no-progress', *extra]


def refine(ann, store, out, tiny_clip, sentence_model, **kw):
    from pcm_plugin.data_prep.refine_pairs import refine_pairs
    name, ckpt = tiny_clip
    kw = dict(dict(k=4, k_back=2, chunk_size=8, progress=False), **kw)
    return refine_pairs(ann, feature_dirs=[store], out_file=str(out),
                        sentence_model=sentence_model, clip=dict(
                            model_config=osp.join(osp.dirname(ckpt),
                                                  f'{name}.json')), **kw)


def read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def test_pipeline_equals_the_algorithm_on_its_embeddings(
        tiny_clip, sentence_model, tmp_path, one_torch_thread):
    from pcm_plugin.clip.clip_features import load_open_clip
    from pcm_plugin.data_prep import pair_refinement as sync
    from pcm_plugin.data_prep.refine_search import embed_text
    from pcm_plugin.data_prep.sentence_encoder import SentenceEncoder
    from pcm_plugin.datasets.feature_store import FeatureStore
    texts = captions(30)
    ann, store = write_pool(tmp_path, tiny_clip, texts)
    report = refine(ann, store, tmp_path / 'out.json', tiny_clip,
                    sentence_model, tau=0.8)

    name, ckpt = tiny_clip
    clip, _, tokenizer = load_open_clip(
        name, checkpoint=ckpt,
        model_config=osp.join(osp.dirname(ckpt), f'{name}.json'))
    text = embed_text(clip, tokenizer, texts)
    images = torch.nn.functional.normalize(torch.from_numpy(
        FeatureStore(store).global_feats([str(100 + i) for i in
                                          range(30)])), dim=-1)
    neigh = sync.search(text, images, k=4, k_back=2, chunk_size=30)
    neigh.update(sentences=SentenceEncoder(sentence_model).encode(texts),
                 own_sims=(text * images).sum(dim=-1))
    chosen = sync.assign(neigh, torch.arange(30))
    keep = sync.keep_best(chosen['score'], 0.8).tolist()

    entries = read(tmp_path / 'out.json')['data_list']
    assert len(entries) == len(keep) == 24 == report['kept']
    assert [e['caption'] for e in entries] == [texts[i] for i in keep]
    assert [e['source_image_id'] for e in entries] == [
        str(100 + i) for i in keep]
    assert [e['image_id'] for e in entries] == [
        str(100 + int(chosen['image'][i])) for i in keep]
    assert {e['feature_dir'] for e in entries} == {store}
    np.testing.assert_allclose([e['clip_cos'] for e in entries],
                               chosen['clip_cos'][keep], atol=1e-5)
    moved = sum(e['image_id'] != e['source_image_id'] for e in entries)
    assert report['moved_kept'] == moved


@pytest.mark.slow
def test_two_ranks_write_the_same_bytes_as_one(tiny_clip, sentence_model,
                                               tmp_path, tool_in_process):
    ann, store = write_pool(tmp_path, tiny_clip, captions(40))
    outs = []
    for torchrun in (False, True):
        out = tmp_path / f'out_{int(torchrun)}.json'
        args = tool_args(ann, store, out, tiny_clip, sentence_model)
        if torchrun:
            run_tool('refine_pairs.py', args, torchrun=True)
        else:
            tool_in_process('tools/refine_pairs.py', args)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert len(read(tmp_path / 'out_1.json')['data_list']) == 36


KILLER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from pcm_plugin.data_prep.refine_pairs import refine_pairs
def kill(chunk):
    if chunk == 2:
        os.kill(os.getpid(), signal.SIGKILL)
refine_pairs({ann!r}, feature_dirs=[{store!r}], out_file={out!r},
             sentence_model={sentence!r}, clip=dict(model_config={config!r}),
             k=4, k_back=2, chunk_size=8, progress=False, save_every=0,
             on_chunk=kill)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_bytes(tiny_clip, sentence_model,
                                              tmp_path):
    ann, store = write_pool(tmp_path, tiny_clip, captions(40))
    whole = tmp_path / 'whole.json'
    refine(ann, store, whole, tiny_clip, sentence_model)
    out = tmp_path / 'resumed.json'
    name, ckpt = tiny_clip
    code = KILLER.format(repo=REPO_ROOT, ann=ann, store=store, out=str(out),
                         config=osp.join(osp.dirname(ckpt), f'{name}.json'),
                         sentence=sentence_model)
    killed = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    report = refine(ann, store, out, tiny_clip, sentence_model)
    assert report['chunks_run_by_rank0'] == 2  # chunks 3 and 4 of 0..4
    assert out.read_bytes() == whole.read_bytes()


def test_a_resume_with_other_settings_is_refused(tiny_clip, sentence_model,
                                                 tmp_path):
    ann, store = write_pool(tmp_path, tiny_clip, captions(20))
    out = tmp_path / 'out.json'
    refine(ann, store, out, tiny_clip, sentence_model)
    with pytest.raises(ValueError, match=r'other inputs or settings \(k: 4'
                       r' -> 5'):
        refine(ann, store, out, tiny_clip, sentence_model, k=5)


# -- bad input ----------------------------------------------------------------

@pytest.mark.parametrize('num, k, message', [
    (1, 1, r'pool has 1 image\(s\): nothing to re-pair'),
    (6, 7, r'--k 7 is larger than the pool of 6 images; lower --k'),
])
def test_bad_input_pools_too_small_are_refused(tiny_clip, sentence_model,
                                               tmp_path, num, k, message):
    from pcm_plugin.data_prep.bad_input import BadInputError
    ann, store = write_pool(tmp_path, tiny_clip, captions(num))
    with pytest.raises(BadInputError, match=message):
        refine(ann, store, tmp_path / 'out.json', tiny_clip, sentence_model,
               k=k, k_back=1)


def test_bad_input_missing_and_nan_features_stop_or_are_counted(
        tiny_clip, sentence_model, tmp_path, one_torch_thread):
    from pcm_plugin.data_prep.bad_input import BadInputError
    feats = np.random.default_rng(0).standard_normal((20, 32))
    feats[3, 5] = np.nan
    ann, store = write_pool(tmp_path, tiny_clip, captions(20),
                            global_feats=feats)
    out = tmp_path / 'out.json'
    with pytest.raises(BadInputError, match=r"1 of 20 images have NaN/Inf "
                       r"global features \(e.g. \['103'\]\).*--skip-bad"):
        refine(ann, store, out, tiny_clip, sentence_model)
    data = read(ann)
    data['data_list'].append(dict(image_id='999', caption='a red star'))
    with open(ann, 'w') as f:
        json.dump(data, f)
    with pytest.raises(BadInputError, match=r"1 of 21 images of .* have no "
                       r"features .*\['999'\].*--skip-bad"):
        refine(ann, store, out, tiny_clip, sentence_model)
    report = refine(ann, store, out, tiny_clip, sentence_model,
                    skip_bad=True, work_dir=str(tmp_path / 'w2'))
    assert report['skipped'] == {'image without features': 1,
                                 'non-finite image features': 1}
    assert report['captions'] == 19
    used = {e['image_id'] for e in read(out)['data_list']} | {
        e['source_image_id'] for e in read(out)['data_list']}
    assert not used & {'999', '103'}


def test_bad_input_duplicate_captions_are_counted_and_kept(
        tiny_clip, sentence_model, tmp_path):
    texts = captions(16)
    texts[5] = texts[9] = texts[2]
    ann, store = write_pool(tmp_path, tiny_clip, texts)
    report = refine(ann, store, tmp_path / 'out.json', tiny_clip,
                    sentence_model, tau=1.0)
    assert report['duplicate_captions'] == 2 and report['kept'] == 16


def test_bad_input_the_input_annotations_are_never_overwritten(
        tiny_clip, sentence_model, tmp_path, tool_in_process):
    ann, store = write_pool(tmp_path, tiny_clip, captions(12))
    before = open(ann, 'rb').read()
    proc = tool_in_process('tools/refine_pairs.py', tool_args(
        ann, store, ann, tiny_clip, sentence_model), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'error: --out {ann} is the input annotation file')
    assert open(ann, 'rb').read() == before
