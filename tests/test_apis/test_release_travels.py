"""A release published --with-clip captions images on another machine.

Both forms are published from a config whose CLIP is a custom open_clip
model (like the demo's mini CLIP) in a folder that is deleted afterwards;
the releases are moved, and a fresh Python process started in another
working directory captions with nothing but the release: the same
captions as the training config and checkpoint gave (those runs are fresh
interpreters by design: marked slow).
"""
import inspect
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, call_tool, write_images

CAPTION = """
import json, sys
from pcm_plugin.apis import PCMCaptionInferencer
inferencer = PCMCaptionInferencer(sys.argv[1])
print(json.dumps(_summary(inferencer, sys.argv[2:])))
"""


def _summary(inferencer, images) -> dict:
    """What a CLIP decides: the features, the concepts PCM retrieves from
    them, the captions (an untrained toy model's are often empty)."""
    results = inferencer(images, return_concepts=True)
    feats = inferencer.features(images)
    return dict(captions=[r['pred_caption'] for r in results],
                concepts=[r['concepts'] for r in results],
                global_feat=feats['global_feat'].tolist())


@pytest.fixture(scope='module')
def travelled(checkpoint, toy_world, tmp_path_factory):
    """``(releases, images, reference captions, elsewhere)``."""
    from mmengine.config import Config

    from pcm_plugin.apis import PCMCaptionInferencer
    config, ckpt, _ = checkpoint
    root = tmp_path_factory.mktemp('travel')
    clip_dir = root / 'clip'
    clip_dir.mkdir()
    source = os.path.dirname(toy_world['clip_head'])
    for name in os.listdir(source):
        shutil.copy(os.path.join(source, name), clip_dir / name)
    cfg = Config.fromfile(config)
    tiny = str(clip_dir / os.path.basename(toy_world['clip_head']))
    cfg.clip_model = dict(name='pcm-tiny-vit-b32', checkpoint=tiny,
                          model_config=str(clip_dir / 'pcm-tiny-vit-b32.json'))
    cfg.model.mixup.clip_head = tiny
    cfg.dump(str(root / 'train_cfg.py'))
    (root / 'images').mkdir()
    images = write_images(str(root / 'images'), n=3)
    reference = _summary(PCMCaptionInferencer(str(root / 'train_cfg.py'),
                                              ckpt), images)
    published = root / 'published'
    for out in ('pcm-toy', 'pcm-toy.safetensors'):
        call_tool('tools/publish_model.py', [root / 'train_cfg.py', ckpt,
                                             published / out, '--with-clip'])
    shutil.rmtree(clip_dir)  # the training machine's CLIP is gone
    releases = root / 'releases'
    shutil.move(str(published), str(releases))
    elsewhere = root / 'elsewhere'
    elsewhere.mkdir()
    return releases, images, reference, elsewhere


def _fresh(cmd, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize('release', ['pcm-toy', 'pcm-toy.safetensors'])
def test_release_with_clip_captions_in_a_fresh_process(travelled, release):
    releases, images, reference, elsewhere = travelled
    assert not str(elsewhere).startswith(REPO_ROOT)
    code = inspect.getsource(_summary) + CAPTION
    out = _fresh([sys.executable, '-c', code, str(releases / release),
                  *images], elsewhere)
    assert json.loads(out) == reference


@pytest.mark.slow
@pytest.mark.parametrize('release', ['pcm-toy', 'pcm-toy.safetensors'])
def test_caption_tool_takes_the_release_alone(travelled, release):
    releases, images, reference, elsewhere = travelled
    out = _fresh([sys.executable, os.path.join(REPO_ROOT, 'tools',
                                               'caption_image.py'),
                  str(releases / release), *images, '--concepts'], elsewhere)
    assert out.splitlines() == [
        f'{image}\t{caption}\t[{", ".join(concepts)}]' for image, caption,
        concepts in zip(images, reference['captions'],
                        reference['concepts'])]


def test_folder_keeps_the_custom_clip_config_name(travelled):
    """open_clip names a custom model after its JSON's stem."""
    releases, _, _, _ = travelled
    folder = releases / 'pcm-toy'
    assert (folder / 'pcm-tiny-vit-b32.json').is_file()
    assert (folder / 'clip_checkpoint.pt').is_file()


def test_one_file_without_clip_names_the_fix(checkpoint, tmp_path):
    """Published without --with-clip, a one-file release says what to
    pass when it cannot find the training machine's CLIP."""
    from pcm_plugin.apis import publish_model
    from pcm_plugin.clip.release_tower import load_release_clip
    config, ckpt, _ = checkpoint
    out = str(tmp_path / 'bare.safetensors')
    publish_model(config, ckpt, out)
    with pytest.raises(ValueError, match='bare.safetensors carries no CLIP.*'
                       '--with-clip.*--clip-checkpoint'):
        load_release_clip(out)


def test_a_release_carrying_its_clip_still_tests_and_loads_cleanly(
        travelled, tmp_path, tool_in_process):
    """The tower's tensors are the inferencer's: the captioner drops them
    when it loads, so tools/test.py and mmengine see no unexpected keys."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from pcm_plugin.apis import resolve_release
    from pcm_plugin.registry import MODELS
    releases, _, _, _ = travelled
    one_file = str(releases / 'pcm-toy.safetensors')
    proc = tool_in_process('tools/test.py',
                           [one_file, '--work-dir', tmp_path / 'w'])
    assert 'Epoch(test)' in proc.stdout + proc.stderr  # the log is read
    assert 'unexpected key' not in proc.stdout + proc.stderr
    cfg, weights = resolve_release(one_file)
    model = MODELS.build(Config(cfg.to_dict()).model)
    load_checkpoint(model, weights, map_location='cpu', strict=True,
                    logger='silent')
    assert not any(k.startswith('clip_tower') for k in model.state_dict())
    assert all(torch.isfinite(v).all() for v in model.state_dict().values()
               if v.is_floating_point())
