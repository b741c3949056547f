"""PCMCaptionInferencer: any image inputs, concepts, skips, odd sizes."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_images


@pytest.fixture(scope='module')
def inferencer(checkpoint):
    from pcm_plugin.apis import PCMCaptionInferencer
    config, ckpt, _ = checkpoint
    return PCMCaptionInferencer(config, ckpt)


def test_paths_arrays_pil_and_folders_give_the_same_captions(inferencer,
                                                             tmp_path):
    paths = write_images(str(tmp_path), n=3)
    by_path = [r['pred_caption'] for r in inferencer(paths, batch_size=2)]
    arrays = [np.asarray(Image.open(p).convert('RGB')) for p in paths]
    assert [r['pred_caption'] for r in inferencer(arrays)] == by_path
    pil = [Image.open(p) for p in paths]
    assert [r['pred_caption'] for r in inferencer(pil, batch_size=3)] == \
        by_path
    folder = [r['pred_caption'] for r in inferencer(str(tmp_path))]
    assert folder == by_path  # write_images names sort in input order
    # One image at a time equals the batch (padding-free features).
    assert [inferencer(p)[0]['pred_caption'] for p in paths] == by_path


def test_concepts_and_mixed_patches_are_the_models_own(inferencer,
                                                       tmp_path):
    paths = write_images(str(tmp_path), n=2)
    results = inferencer(paths, return_concepts=True)
    feats = inferencer.features(paths)
    mixup = inferencer.model.mixup
    details = mixup(feats['patch_feats'], feats['global_feat'])
    for row, result in enumerate(results):
        expected = [mixup.concept_words[i]
                    for i in details['concept_idx'][row].tolist()]
        assert result['concepts'] == expected
        assert len(expected) == mixup.top_k
        assert result['mixed_patches'] == \
            details['replace_mask'][row].nonzero()[:, 0].tolist()


def _png_header_only(path, width, height):
    """A PNG whose header claims ``width x height`` (no pixel data)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack('>I', len(data)) + body + struct.pack(
            '>I', zlib.crc32(body) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) +
                     chunk(b'IEND', b''))


def test_bad_input_odd_images_among_good_ones(inferencer, tmp_path):
    """A 1x1 image is captioned; a 20000x20000 one (decompression-bomb
    guard) and a broken file are a counted skip, the others still get
    their captions, each result names its input."""
    from pcm_plugin.clip.image_io import BadImageError
    good = write_images(str(tmp_path), n=2)
    tiny = tmp_path / 'tiny.png'
    Image.new('RGB', (1, 1), (200, 10, 10)).save(tiny)
    huge = tmp_path / 'huge.png'
    _png_header_only(huge, 20000, 20000)
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    inputs = [good[0], str(huge), str(tiny), str(broken), good[1]]
    with pytest.raises(BadImageError, match='huge.png: 20000x20000.*'
                       'max-pixels'):
        inferencer(inputs)
    results = inferencer(inputs, skip_bad=True)
    assert [r['input_index'] for r in results] == [0, 2, 4]
    assert [i for i, _ in inferencer.skipped] == [1, 3]
    alone = [r['pred_caption'] for r in inferencer([good[0], str(tiny),
                                                    good[1]])]
    assert [r['pred_caption'] for r in results] == alone


@pytest.mark.parametrize('source', [
    'generated', pytest.param('flickr8k', marks=pytest.mark.real_data)])
def test_visualize_mixup_tool_draws_one_figure_per_image(
        checkpoint, tmp_path, source, request, tool_in_process):
    import glob
    import os.path as osp
    config, ckpt, _ = checkpoint
    if source == 'generated':
        images = write_images(str(tmp_path), n=2)
    else:
        shared = request.getfixturevalue('shared_data')
        images = sorted(glob.glob(osp.join(shared, 'flickr8k',
                                           'images_full', '*.jpg')))[:2]
    out = tmp_path / 'figs'
    proc = tool_in_process('tools/visualize_mixup.py', [
        config, ckpt, *images, '--out-dir', out], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(osp.splitext(osp.basename(p))[0] +
                             '_mixup.png' for p in images)
    assert Image.open(out / written[0]).size[0] == 448
