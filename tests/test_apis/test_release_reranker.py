"""A release of a captioner that re-ranks its beams with CLIP travels.

A tiny PCMCaptioner with ``model.reranker`` on (the tiny random CLIP,
weight 0.75: re-ranking changes captions, the control) is published in
both forms ``--with-clip`` from a folder of CLIP files that is then
deleted; the releases are moved and re-rank exactly as the model did.
Without ``--with-clip`` publishing is refused (the config would keep the
publishing machine's CLIP paths) unless ``--without-reranker`` leaves the
re-ranker out.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT, tiny_captioner_cfg
from tests.test_models.test_clip_reranker import features, reranker_cfg

TOOL = 'tools/publish_model.py'
FORMS = ['pcm-rr', 'pcm-rr.safetensors']
# The features the captions are compared on (4 images, 2 batches).
BATCHES = [features(seed=5), features(seed=6)]

LOAD_AND_CAPTION = """
import json, sys, torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
import pcm_plugin
from pcm_plugin.apis import resolve_release
from pcm_plugin.registry import MODELS
config, weights = resolve_release(sys.argv[1])
if not isinstance(config, Config):
    config = Config.fromfile(config)
model = MODELS.build(config.model).eval()
load_checkpoint(model, weights, map_location='cpu', strict=True,
                logger='silent')
batches = torch.load(sys.argv[2], weights_only=True)
print(json.dumps([model.generate(inputs) for inputs in batches]))
"""


def load_release(path):
    """The model of a release, built and loaded strictly (eval mode)."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from pcm_plugin.apis import resolve_release
    from pcm_plugin.registry import MODELS
    config, weights = resolve_release(str(path))
    if not isinstance(config, Config):
        config = Config.fromfile(config)
    model = MODELS.build(config.model).eval()
    load_checkpoint(model, weights, map_location='cpu', strict=True,
                    logger='silent')
    return model, config


def captions_of(model):
    return [model.generate(inputs) for inputs in BATCHES]


def copy_clip(tiny_clip, folder):
    """The tiny CLIP's files copied to ``folder``: (checkpoint, JSON)."""
    folder.mkdir()
    source = os.path.dirname(tiny_clip[1])
    for name in os.listdir(source):
        shutil.copy(os.path.join(source, name), folder / name)
    return (str(folder / os.path.basename(tiny_clip[1])),
            str(folder / f'{tiny_clip[0]}.json'))


def reranking_config(tiny_clip, tiny_bank, tiny_tokenizer, root, clip,
                     reranker_clip=None):
    """A config re-ranking with the CLIP files ``clip`` (or
    ``reranker_clip``), ``clip_model`` naming ``clip``; dumped to
    ``root/cfg.py``."""
    from mmengine.config import Config
    checkpoint, json_config = clip
    rerank_checkpoint, rerank_json = reranker_clip or clip
    model = tiny_captioner_cfg(tiny_clip, tiny_bank, tiny_tokenizer,
                               beam_size=3)
    model['reranker'] = reranker_cfg(
        tiny_clip, weight=0.75, clip_checkpoint=rerank_checkpoint,
        model_config=rerank_json)
    cfg = Config(dict(model=model, clip_model=dict(
        name=tiny_clip[0], checkpoint=checkpoint, model_config=json_config)))
    path = str(root / 'cfg.py')
    cfg.dump(path)
    return path


def save_checkpoint(config, path):
    """An untrained model of ``config`` (seed 0) saved to ``path``."""
    from mmengine.config import Config

    from pcm_plugin.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model).eval()
    torch.save(dict(state_dict=model.state_dict()), path)
    return model


@pytest.fixture(scope='module')
def travelled(tiny_clip, tiny_bank, tiny_tokenizer, tmp_path_factory,
              one_torch_thread):
    """Both forms published --with-clip, the CLIP folder deleted, the
    releases moved: ``(releases, model, plain captions, root)``."""
    from pcm_plugin.apis import publish_model
    root = tmp_path_factory.mktemp('rerank_release')
    clip = copy_clip(tiny_clip, root / 'clip')
    config = reranking_config(tiny_clip, tiny_bank, tiny_tokenizer, root,
                              clip)
    ckpt = str(root / 'model.pth')
    model = save_checkpoint(config, ckpt)
    reranker, model.reranker = model.reranker, None
    plain = captions_of(model)
    model.reranker = reranker
    published = root / 'published'
    for form in FORMS:
        publish_model(config, ckpt, str(published / form), with_clip=True)
    shutil.rmtree(root / 'clip')  # the publishing machine's CLIP is gone
    releases = root / 'releases'
    shutil.move(str(published), str(releases))
    return releases, model, plain, root


@pytest.mark.parametrize('form', FORMS)
def test_moved_release_reranks_as_the_model(travelled, form):
    """Same re-ranked captions (which differ from plain beam search's),
    the same text tower, and no path of the CLIP folder or of where it
    was published in the release's config."""
    releases, model, plain, root = travelled
    reference = captions_of(model)
    assert reference != plain  # CLIP changes picks: the check can fail
    again, config = load_release(releases / form)
    assert captions_of(again) == reference
    expected = model.reranker.text_tower_state()
    tower = again.reranker.text_tower_state()
    assert tower.keys() == expected.keys()
    assert all(torch.equal(tower[k], v) for k, v in expected.items())
    text = json.dumps(config.to_dict())
    assert str(root / 'clip') not in text
    assert str(root / 'published') not in text


def test_folder_points_the_reranker_at_the_one_copy(travelled):
    """The re-ranker's CLIP is clip_model's: its files are copied once and
    both configs name the copies."""
    releases, _, _, _ = travelled
    folder = releases / 'pcm-rr'
    assert {'clip_checkpoint.pt', 'pcm-tiny-vit-b32.json'} <= \
        set(os.listdir(folder))
    assert not any(name.startswith('reranker_clip')
                   for name in os.listdir(folder))
    text = (folder / 'config.py').read_text()
    here = '{{ fileDirname }}'
    assert text.count(f"clip_checkpoint='{here}/clip_checkpoint.pt'") == 1
    assert text.count(f"checkpoint='{here}/clip_checkpoint.pt'") == 2
    assert text.count(f"model_config='{here}/pcm-tiny-vit-b32.json'") == 2


def test_one_file_carries_the_text_tower_as_data(travelled):
    """Tensors ``clip_text_tower.*`` and the architecture in the JSON
    config; the re-ranker's tower comes from them."""
    from safetensors import safe_open

    from pcm_plugin.apis import resolve_release
    releases, model, _, _ = travelled
    path = str(releases / 'pcm-rr.safetensors')
    with safe_open(path, framework='pt') as f:
        keys = {k for k in f.keys() if k.startswith('clip_text_tower.')}
    assert keys == {f'clip_text_tower.{k}'
                    for k in model.reranker.text_tower_state()}
    reranker = resolve_release(path)[0].model.reranker
    assert reranker.clip_checkpoint == 'from_weights'
    from pcm_plugin.apis.model_card import read_model_card
    for form in FORMS:  # the card says the release re-ranks, and the cost
        card = read_model_card(str(releases / form))
        assert 'keeps 3 finished candidates and returns the one with the ' \
            'best fusion' in card and '(weight 0.75, length penalty' in card
        assert '`--cfg-options model.reranker=None` turns it off' in card
    assert reranker.pretrained is None
    assert reranker.model_config.to_dict() == model.reranker.clip_config
    assert reranker.weight == 0.75 and reranker.num_candidates == 3


@pytest.mark.slow
def test_moved_releases_rerank_in_a_fresh_process(travelled):
    """Where open_clip has never heard of the tiny CLIP (a fresh process
    in another working directory), both forms re-rank as the model."""
    releases, model, _, root = travelled
    inputs = str(root / 'features.pt')
    torch.save(BATCHES, inputs)
    elsewhere = root / 'elsewhere'
    elsewhere.mkdir(exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
               PYTHONPATH=REPO_ROOT)
    for form in FORMS:
        proc = subprocess.run(
            [sys.executable, '-c', LOAD_AND_CAPTION, str(releases / form),
             inputs], cwd=elsewhere, env=env, capture_output=True,
            text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.splitlines()[-1]) == \
            captions_of(model)


@pytest.mark.parametrize('form', FORMS)
def test_without_with_clip_is_refused(travelled, tmp_path, form, tiny_clip,
                                      tiny_bank, tiny_tokenizer,
                                      tool_in_process):
    """The tool names both ways out, and writes nothing."""
    _, _, _, root = travelled
    clip = copy_clip(tiny_clip, tmp_path / 'clip')
    config = reranking_config(tiny_clip, tiny_bank, tiny_tokenizer,
                              tmp_path, clip)
    ckpt = str(root / 'model.pth')
    proc = tool_in_process(TOOL, [config, ckpt, tmp_path / form],
                           check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        'error: the model re-ranks its beams with CLIP (model.reranker), '
        'whose text tower a release carries only with --with-clip '
        '(with_clip=True); publish with --with-clip, or without the '
        're-ranker (--without-reranker, with_reranker=False: captions by '
        'plain beam search)')
    assert not (tmp_path / form).exists()


def test_without_reranker_releases_plain_beam_search(
        travelled, tmp_path, tiny_clip, tiny_bank, tiny_tokenizer,
        tool_in_process):
    _, _, plain, root = travelled
    clip = copy_clip(tiny_clip, tmp_path / 'clip')
    config = reranking_config(tiny_clip, tiny_bank, tiny_tokenizer,
                              tmp_path, clip)
    out = tmp_path / 'plain.safetensors'
    tool_in_process(TOOL, [config, str(root / 'model.pth'), out,
                           '--without-reranker'])
    shutil.rmtree(tmp_path / 'clip')
    again, config = load_release(out)
    assert again.reranker is None and 'reranker' not in config.model
    assert captions_of(again) == plain


def test_a_reranker_clip_of_its_own_is_copied_beside(
        travelled, tmp_path, tiny_clip, tiny_bank, tiny_tokenizer):
    """A re-ranker naming other CLIP weights than clip_model gets its own
    copy (the JSON, the same bytes, is shared), and re-ranks with them."""
    from pcm_plugin.apis import publish_model
    from pcm_plugin.testing import build_tiny_open_clip
    _, shared, _, _ = travelled  # re-ranks with clip_model's CLIP
    clip = copy_clip(tiny_clip, tmp_path / 'clip')
    other = build_tiny_open_clip(str(tmp_path / 'other'), tiny_clip[0],
                                 seed=1)[1]
    config = reranking_config(tiny_clip, tiny_bank, tiny_tokenizer,
                              tmp_path, clip, (other, clip[1]))
    ckpt = str(tmp_path / 'model.pth')
    model = save_checkpoint(config, ckpt)
    publish_model(config, ckpt, str(tmp_path / 'rel'), with_clip=True)
    shutil.rmtree(tmp_path / 'clip')
    shutil.rmtree(tmp_path / 'other')
    folder = tmp_path / 'rel'
    assert {'clip_checkpoint.pt', 'reranker_clip_checkpoint.pt',
            'pcm-tiny-vit-b32.json'} <= set(os.listdir(folder))
    again, config = load_release(folder)
    assert config.model.reranker.clip_checkpoint == \
        str(folder / 'reranker_clip_checkpoint.pt')
    assert captions_of(again) == captions_of(model)
    tower = again.reranker.text_tower_state()
    assert all(torch.equal(tower[k], v) for k, v
               in model.reranker.text_tower_state().items())
    assert not torch.equal(tower['token_embedding.weight'],
                           shared.reranker.tower.token_embedding.weight)


def test_a_release_that_loses_the_text_tower_is_not_written(
        travelled, tmp_path, tiny_clip, tiny_bank, tiny_tokenizer,
        monkeypatch):
    """The publish-time check rebuilds the re-ranker: one whose tower
    does not come back (here: never loaded) fails it, nothing written."""
    from pcm_plugin.apis import publish_model
    from pcm_plugin.models.clip_reranker import CLIPReranker
    _, _, _, root = travelled
    clip = copy_clip(tiny_clip, tmp_path / 'clip')
    config = reranking_config(tiny_clip, tiny_bank, tiny_tokenizer,
                              tmp_path, clip)
    monkeypatch.setattr(CLIPReranker, 'load_text_tower',
                        lambda self, tensors: None)
    out = tmp_path / 'bad.safetensors'
    with pytest.raises(RuntimeError, match="does not reproduce the "
                       r"re-ranker's CLIP text tower \(\['no text tower'\]"):
        publish_model(config, str(root / 'model.pth'), str(out),
                      with_clip=True)
    assert not out.exists()


def test_from_weights_without_a_tower_says_what_to_load(travelled):
    """A one-file release's re-ranker built without those weights (e.g.
    the config with a training checkpoint) refuses to re-rank."""
    from pcm_plugin.apis import resolve_release
    from pcm_plugin.registry import MODELS
    releases, _, _, _ = travelled
    config, _ = resolve_release(str(releases / 'pcm-rr.safetensors'))
    reranker = MODELS.build(config.model.reranker)
    with pytest.raises(RuntimeError, match="clip_checkpoint='from_weights'"
                       ', but the weights loaded carried no CLIP text tower'
                       ': load a one-file release published --with-clip'):
        reranker.cosines(BATCHES[0]['global_feat'], [['a']] * 4)


def test_reranker_turned_off_at_load_drops_the_carried_tower(travelled):
    """``model.reranker=None`` on a one-file release: the text tower's
    tensors are no unexpected keys, and captions are plain beam search's."""
    from mmengine.runner import load_checkpoint

    from pcm_plugin.apis import resolve_release
    from pcm_plugin.registry import MODELS
    releases, _, plain, _ = travelled
    config, weights = resolve_release(str(releases / 'pcm-rr.safetensors'))
    config.model.reranker = None
    model = MODELS.build(config.model).eval()
    load_checkpoint(model, weights, map_location='cpu', strict=True,
                    logger='silent')
    assert captions_of(model) == plain
