"""tools/publish_model.py from its command line: both release forms, and
files that others on a shared machine can read."""
import os
import stat

import pytest

TOOL = 'tools/publish_model.py'


@pytest.fixture
def umask_022():
    """The usual umask, whatever the test runner's is."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_one_file_release_from_the_command_line(checkpoint, tmp_path,
                                               tool_in_process):
    config, ckpt, _ = checkpoint
    out = tmp_path / 'pcm-demo.safetensors'
    proc = tool_in_process(TOOL, [config, ckpt, out])
    assert proc.stdout.strip() == \
        f'released pcm-demo to {out}: pcm-demo.safetensors'
    assert out.is_file()


def test_folder_release_from_the_command_line(checkpoint, tmp_path,
                                             tool_in_process):
    config, ckpt, _ = checkpoint
    out = tmp_path / 'pcm-demo'
    proc = tool_in_process(TOOL, [config, ckpt, out])
    listed = proc.stdout.strip().split(': ', 1)[1].split(', ')
    assert sorted(listed + ['release.json']) == sorted(os.listdir(out))
    assert proc.stdout.startswith(f'released pcm-demo to {out}: ')


def test_released_files_follow_the_umask(checkpoint, tmp_path, umask_022):
    """safetensors writes 0600 on its own; a release is for others."""
    from pcm_plugin.apis import publish_model
    config, ckpt, _ = checkpoint
    folder = tmp_path / 'rel'
    publish_model(config, ckpt, str(folder))
    modes = {name: _mode(folder / name) for name in os.listdir(folder)}
    assert modes == {name: 0o644 for name in modes}
    assert _mode(folder) == 0o755
    one = tmp_path / 'one.safetensors'
    publish_model(config, ckpt, str(one))
    assert _mode(one) == 0o644
    os.umask(0o077)  # and a private umask is kept private
    private = tmp_path / 'private.safetensors'
    publish_model(config, ckpt, str(private))
    assert _mode(private) == 0o600


def test_a_model_card_in_both_forms(checkpoint, tmp_path):
    """What it was trained on, its scores, how to use it, whether it is
    safe to accept: README.md in a folder, metadata in one file."""
    from mmengine.config import Config

    from pcm_plugin.apis import publish_model
    from pcm_plugin.apis.model_card import read_model_card
    config, ckpt, model = checkpoint
    metrics = {'coco-caption/CIDEr': 12.5}
    folder, one = str(tmp_path / 'pcm-toy'), str(tmp_path / 'pcm-toy1'
                                                 '.safetensors')
    publish_model(config, ckpt, folder, metrics=metrics)
    publish_model(config, ckpt, one)
    card = read_model_card(folder)
    assert card == open(os.path.join(folder, 'README.md')).read()
    train = Config.fromfile(config).train_dataloader.dataset
    train_file = os.path.basename(train.ann_file)
    words = len(model.mixup.concept_words)
    for text in ('# pcm-toy\n',
                 f'training data: `{train_file}` ({train.type})',
                 f'vocabulary: {model.decoder.vocab_size} tokens; concept '
                 f'bank: {words} concepts', 'CLIP: `pcm-tiny-vit-b32`',
                 '| coco-caption/CIDEr | 12.5 |',
                 'caption metrics ×100, as papers report them',
                 '## How it captions\n\nPCMCaptioner: beam search with '
                 f'{model.decoder.beam_size} beams, the best beam returned.',
                 'python tools/caption_image.py pcm-toy photo.jpg',
                 "ImageCaptioner('pcm-toy')('photo.jpg')",
                 'config.py` is Python and runs when it is loaded',
                 f'from: config `{os.path.basename(config)}`, checkpoint '
                 f'`{os.path.basename(ckpt)}`'):
        assert text in card, text
    single = read_model_card(one)
    assert single.startswith('# pcm-toy1\n')
    assert 'None recorded' in single and 'data only' in single
    assert 'python tools/caption_image.py pcm-toy1.safetensors' in single


def test_release_json_records_names_not_paths(checkpoint, tmp_path):
    import json

    from pcm_plugin.apis import publish_model
    config, ckpt, _ = checkpoint
    out = tmp_path / 'rel'
    publish_model(config, ckpt, str(out))
    manifest = json.loads((out / 'release.json').read_text())
    assert manifest['source']['config'] == os.path.basename(config)
    assert manifest['source']['checkpoint'] == os.path.basename(ckpt)
    assert manifest['clip_model'] == dict(
        name='pcm-tiny-vit-b32', checkpoint='pcm-tiny-vit-b32.pt',
        model_config='pcm-tiny-vit-b32.json')
    assert str(tmp_path.parent) not in (out / 'release.json').read_text()
