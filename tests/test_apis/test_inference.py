"""Raw-image captioning: same features as the extraction tool, real photos."""
import glob
import json
import os.path as osp

import numpy as np
import pytest

from tests.helpers import write_images


def test_features_match_extraction_tool_and_captions(checkpoint, toy_world,
                                                      tmp_path):
    from pcm_plugin.apis import ImageCaptioner
    from pcm_plugin.data_prep.extraction import extract_features
    from pcm_plugin.datasets import FeatureStore
    config, ckpt, model = checkpoint
    paths = write_images(str(tmp_path))
    ann = tmp_path / 'test.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=[
        dict(image_id=str(i + 1), file_name=osp.basename(p))
        for i, p in enumerate(paths)])))
    extract_features(str(ann), image_dir=str(tmp_path),
                     out_dir=str(tmp_path / 'feats'),
                     clip_model='pcm-tiny-vit-b32',
                     clip_checkpoint=toy_world['clip_head'], workers=0,
                     progress=False)
    store = FeatureStore(str(tmp_path / 'feats'))
    captioner = ImageCaptioner(config, ckpt)
    feats = captioner.features(paths)
    for i in range(3):
        item = store.get(str(i + 1))
        np.testing.assert_allclose(feats['patch_feats'][i].numpy(),
                                   item['patch'], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(feats['global_feat'][i].numpy(),
                                   item['global_feat'], rtol=2e-3, atol=2e-3)
    # The checkpoint was loaded: same captions as the in-memory model.
    model.eval()
    expected = model.generate(feats)
    assert captioner(paths, batch_size=2) == expected
    assert all(isinstance(c, str) for c in expected)


@pytest.mark.real_data
def test_captions_the_full_size_flickr_photos(checkpoint, shared_data,
                                              tmp_path, tool_in_process):
    config, ckpt, _ = checkpoint
    photos = sorted(glob.glob(osp.join(shared_data, 'flickr8k',
                                       'images_full', '*.jpg')))
    assert len(photos) == 24
    out = tmp_path / 'captions.json'
    proc = tool_in_process('tools/caption_image.py',
                           [config, ckpt, *photos, '--out', out], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    captions = json.loads(out.read_text())
    assert sorted(captions) == photos
    assert len(proc.stdout.strip().splitlines()) == 24


def test_bad_input_one_unreadable_image_among_good_ones(checkpoint,
                                                        tmp_path,
                                                        tool_in_process):
    config, ckpt, model = checkpoint
    good = write_images(str(tmp_path), n=2)
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    missing = str(tmp_path / 'missing.png')
    out = tmp_path / 'captions.json'
    out.write_text('{"kept": "from before"}')
    args = [config, ckpt, good[0], broken, good[1], missing, '--out', out]
    proc = tool_in_process('tools/caption_image.py', args, check=False)
    # Stops before any work, naming both bad files; --out untouched.
    assert proc.returncode != 0
    assert 'broken.jpg' in proc.stderr and 'missing.png' in proc.stderr
    assert '--skip-bad' in proc.stderr
    assert json.loads(out.read_text()) == {'kept': 'from before'}
    proc = tool_in_process('tools/caption_image.py', args + ['--skip-bad'],
                           check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'skipped 2 unreadable image(s)' in proc.stderr
    assert sorted(json.loads(out.read_text())) == sorted(good)


def test_bad_input_unwritable_out_fails_before_captioning(checkpoint,
                                                          tmp_path,
                                                          tool_in_process):
    config, ckpt, _ = checkpoint
    good = write_images(str(tmp_path), n=1)
    (tmp_path / 'a_file').write_text('not a folder')
    proc = tool_in_process('tools/caption_image.py', [
        config, ckpt, *good, '--out', tmp_path / 'a_file' / 'c.json'],
        check=False)
    assert proc.returncode != 0 and 'cannot create folder' in proc.stderr
    assert proc.stdout == ''  # nothing was captioned first


def test_one_path_a_folder_or_one_array_is_one_input(checkpoint, tmp_path):
    """The most natural first call: a string is one image (or a folder),
    never its characters; a Path and a single array work the same."""
    import pathlib

    from PIL import Image

    from pcm_plugin.apis import ImageCaptioner
    config, ckpt, _ = checkpoint
    paths = write_images(str(tmp_path), n=2)
    captioner = ImageCaptioner(config, ckpt)
    each = captioner(paths)
    assert captioner(paths[0]) == each[:1]
    assert captioner(pathlib.Path(paths[1])) == each[1:]
    assert captioner(str(tmp_path)) == each  # names sort in input order
    assert captioner(np.asarray(Image.open(paths[0]).convert('RGB'))) == \
        each[:1]
