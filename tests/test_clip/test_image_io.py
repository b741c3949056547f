"""Tests for pcm_plugin.clip.image_io (bad images, RGB rules)."""
import os.path as osp

import numpy as np
import pytest


def save(path, array, mode=None, **kwargs):
    from PIL import Image
    Image.fromarray(array, mode=mode).save(path, **kwargs)
    return str(path)


@pytest.fixture
def good_png(tmp_path):
    rng = np.random.default_rng(0)
    return save(tmp_path / 'good.png',
                rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))


class TestLoadRgbImage:

    def test_rgb_png_round_trips_exactly(self, tmp_path):
        from pcm_plugin.clip.image_io import load_rgb_image
        array = np.random.default_rng(1).integers(0, 256, (20, 10, 3),
                                                  dtype=np.uint8)
        image = load_rgb_image(save(tmp_path / 'a.png', array))
        assert image.mode == 'RGB'
        np.testing.assert_array_equal(np.asarray(image), array)

    def test_grayscale_becomes_three_equal_channels(self, tmp_path):
        from pcm_plugin.clip.image_io import load_rgb_image
        gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
        image = np.asarray(load_rgb_image(save(tmp_path / 'g.png', gray)))
        assert image.shape == (8, 8, 3)
        for channel in range(3):
            np.testing.assert_array_equal(image[..., channel], gray)

    def test_rgba_is_composited_on_white(self, tmp_path):
        from pcm_plugin.clip.image_io import load_rgb_image
        rgba = np.zeros((4, 4, 4), dtype=np.uint8)
        rgba[..., 0] = 200  # red under the alpha
        rgba[0, 0, 3] = 255  # opaque pixel
        rgba[0, 1, 3] = 128  # half transparent
        image = np.asarray(load_rgb_image(save(tmp_path / 'a.png', rgba)))
        np.testing.assert_array_equal(image[0, 0], [200, 0, 0])
        np.testing.assert_array_equal(image[1, 1], [255, 255, 255])
        # 128/255 of (200, 0, 0) over white: about (227, 128, 128).
        np.testing.assert_allclose(image[0, 1], [227, 127, 127], atol=1)

    def test_palette_with_transparency_and_16_bit(self, tmp_path):
        from PIL import Image

        from pcm_plugin.clip.image_io import load_rgb_image
        pal = Image.new('P', (3, 3), 0)
        pal.putpalette([10, 20, 30] + [0, 0, 0] * 255)
        pal.info['transparency'] = 0
        pal.save(tmp_path / 'p.png', transparency=0)
        image = np.asarray(load_rgb_image(str(tmp_path / 'p.png')))
        np.testing.assert_array_equal(image, np.full((3, 3, 3), 255))
        wide = np.array([[0, 65535], [257 * 100, 257 * 7]], dtype=np.uint16)
        Image.fromarray(wide).save(tmp_path / 'w.png')
        image = np.asarray(load_rgb_image(str(tmp_path / 'w.png')))
        np.testing.assert_array_equal(image[..., 0], [[0, 255], [100, 7]])

    @pytest.mark.parametrize('kind, reason', [
        ('zero', 'zero-byte file'),
        ('corrupt', 'not a readable image'),
        ('truncated', 'truncated or corrupt image data'),
        ('missing', 'image file not found'),
    ])
    def test_bad_files_name_the_file(self, tmp_path, good_png, kind, reason):
        from pcm_plugin.clip.image_io import (
            BadImageError,
            load_rgb_image,
        )
        path = tmp_path / f'{kind}.png'
        data = open(good_png, 'rb').read()
        if kind == 'zero':
            path.write_bytes(b'')
        elif kind == 'corrupt':
            path.write_bytes(b'this is not an image' * 10)
        elif kind == 'truncated':
            path.write_bytes(data[:len(data) // 2])
        with pytest.raises(BadImageError, match=reason) as info:
            load_rgb_image(str(path))
        assert str(path) in str(info.value)
        assert info.value.path == str(path)

    def test_huge_image_respects_max_pixels(self, tmp_path):
        from pcm_plugin.clip.image_io import (
            BadImageError,
            load_rgb_image,
        )
        path = save(tmp_path / 'huge.png', np.zeros((1000, 1200),
                                                    dtype=np.uint8))
        with pytest.raises(BadImageError, match='1200x1000 = 1200000 pixels '
                           'exceeds --max-pixels 1000000'):
            load_rgb_image(path, max_pixels=1_000_000)
        assert load_rgb_image(path, max_pixels=0).size == (1200, 1000)
        assert load_rgb_image(path).size == (1200, 1000)  # PIL's default

    def test_limit_above_pil_bomb_threshold_is_honoured(self, tmp_path,
                                                        monkeypatch):
        from PIL import Image

        from pcm_plugin.clip.image_io import load_rgb_image
        path = save(tmp_path / 'big.png', np.zeros((100, 100),
                                                   dtype=np.uint8))
        # PIL alone would refuse this image (> 2x its limit).
        monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
        assert load_rgb_image(path, max_pixels=20_000).size == (100, 100)
        assert Image.MAX_IMAGE_PIXELS == 1000  # restored


class TestImageListDataset:

    def test_bad_items_become_messages_not_exceptions(self, tmp_path,
                                                      good_png):
        from pcm_plugin.clip.image_io import (
            ImageListDataset,
            candidate_paths,
        )
        (tmp_path / 'empty.png').write_bytes(b'')
        dataset = ImageListDataset(
            candidates=[[good_png], candidate_paths(str(tmp_path), 'empty'),
                        candidate_paths(str(tmp_path), 'nope')],
            transform=lambda im: np.asarray(im).shape)
        assert dataset[0] == (0, (40, 30, 3), None)
        index, tensor, error = dataset[1]
        assert (index, tensor) == (1, None) and 'zero-byte' in error
        _, _, error = dataset[2]
        assert 'nope.png' in error and 'nope.jpg' in error

    def test_candidates_prefer_file_name_then_extensions(self, tmp_path):
        from pcm_plugin.clip.image_io import (
            candidate_paths,
            resolve_path,
        )
        assert candidate_paths('root', '7', 'val/x_7.jpg') == [
            osp.join('root', 'val/x_7.jpg')]
        save(tmp_path / '7.jpg', np.zeros((4, 4, 3), dtype=np.uint8))
        assert resolve_path(candidate_paths(str(tmp_path), '7')) == str(
            tmp_path / '7.jpg')


def test_bad_input_folder_with_gif_webp_and_other_files(tmp_path):
    """GIF and WebP are captioned like PNG (PIL reads them); the other
    files of the folder are counted by extension, not passed over."""
    from collections import Counter

    from PIL import Image

    from pcm_plugin.clip.image_io import (
        describe_skipped,
        expand_image_inputs,
        load_rgb_image,
    )
    colour = np.full((8, 6, 3), (200, 40, 10), np.uint8)
    save(tmp_path / 'a.png', colour)
    save(tmp_path / 'b.GIF', colour)  # palette: exact for one colour
    save(tmp_path / 'c.webp', colour, lossless=True)
    Image.fromarray(colour).save(tmp_path / 'd.gif', save_all=True,
                                 append_images=[Image.new('RGB', (6, 8))])
    for name in ('notes.txt', 'list.txt', 'raw.heic', '.DS_Store'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'sub').mkdir()  # a folder: not a file left out
    left_out = Counter()
    images = expand_image_inputs([str(tmp_path)], left_out)
    assert [osp.basename(p) for p in images] == ['a.png', 'b.GIF', 'c.webp',
                                                 'd.gif']
    for path in images:  # an animated GIF gives its first frame
        np.testing.assert_array_equal(np.asarray(load_rgb_image(path)),
                                      colour)
    assert left_out == {'.txt': 2, '.heic': 1, 'no extension': 1}
    assert describe_skipped(left_out) == (
        'left out 4 non-image files of the folders (2 x .txt, 1 x .heic, '
        '1 x no extension; images are .png, .jpg, .jpeg, .webp, .gif, .bmp, '
        '.tif, .tiff)')
    assert describe_skipped(Counter()) == ''
    assert expand_image_inputs([str(tmp_path / 'x.txt')]) == [
        str(tmp_path / 'x.txt')]  # a file named on its own is kept
