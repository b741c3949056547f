"""clip_features + extraction (docs/method.md §2.2) with a tiny open_clip."""
import errno
import json
import os
import os.path as osp

import numpy as np
import pytest

CAPTIONS = ['a red square', 'a green circle', 'une tasse de café',
            'two blue lines', 'a black dot']


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    """name -> (model name, checkpoint, config json) for both layouts."""
    from pcm_plugin.testing import build_tiny_open_clip
    root = tmp_path_factory.mktemp('clip')
    out = {}
    for name in ('pcm-tiny-vit-b32', 'pcm-tiny-vit-l14'):
        model, ckpt = build_tiny_open_clip(str(root), name)
        out[name] = (model, ckpt, str(root / f'{name}.json'))
    return out


def load(clips, name='pcm-tiny-vit-b32'):
    from pcm_plugin.clip.clip_features import load_open_clip
    model, ckpt, _ = clips[name]
    return load_open_clip(model, checkpoint=ckpt)


def write_images(folder, modes=('RGB', 'L', 'RGBA', 'RGB', 'RGB')):
    """One small random image per mode; the 4th is a JPEG."""
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, mode in enumerate(modes):
        channels = {'RGB': 3, 'L': 1, 'RGBA': 4}[mode]
        array = rng.integers(0, 256, (48, 40, channels), dtype=np.uint8)
        image = Image.fromarray(array.squeeze(-1) if channels == 1 else
                                array, mode=mode)
        ext = 'jpg' if k == 3 else 'png'
        image.save(osp.join(folder, f'{6000000 + k}.{ext}'))


def write_train_ann(path, captions=CAPTIONS):
    data = dict(data_list=[dict(image_id=str(6000000 + k), caption=c)
                           for k, c in enumerate(captions)])
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    write_images(str(root / 'images'))
    return write_train_ann(root / 'train.json'), str(root / 'images')


def extract(ann, image_dir, out_dir, clips, name='pcm-tiny-vit-b32',
            **kwargs):
    from pcm_plugin.data_prep.extraction import extract_features
    model, ckpt, _ = clips[name]
    options = dict(batch_size=2, shard_size=2, workers=0, progress=False)
    options.update(kwargs)
    return extract_features(ann, image_dir=image_dir, out_dir=str(out_dir),
                            clip_model=model, clip_checkpoint=ckpt,
                            **options)


def direct_features(clips, paths, captions, name='pcm-tiny-vit-b32'):
    """Features computed image by image, without the tool."""
    import torch

    from pcm_plugin.clip.clip_features import (
        caption_cosine,
        extract_batch,
    )
    from pcm_plugin.clip.image_io import load_rgb_image
    model, preprocess, tokenizer = load(clips, name)
    pool = 2 if name.endswith('l14') else 1
    images = torch.stack([preprocess(load_rgb_image(p)) for p in paths])
    patch, global_feat = extract_batch(model, images, pool=pool)
    cos = caption_cosine(model, tokenizer, global_feat, captions)
    return patch.numpy(), global_feat.numpy(), cos.numpy()


@pytest.fixture(scope='module')
def reference_store(tmp_path_factory, dataset, clips):
    ann, image_dir = dataset
    out = tmp_path_factory.mktemp('ref') / 'store'
    summary = extract(ann, image_dir, out, clips)
    return str(out), summary


def store_arrays(root):
    from pcm_plugin.datasets.feature_store import FeatureStore
    store = FeatureStore(root)
    return {i: store.get(i) for i in store.ids}


class TestPatchTokens:

    def test_tokens_are_the_last_block_output_before_ln_post(self, clips):
        import torch

        from pcm_plugin.clip.clip_features import encode_image_tokens
        model, _, _ = load(clips)
        visual = model.visual
        images = torch.randn(2, 3, 224, 224, generator=torch.Generator()
                             .manual_seed(0))  # (B, 3, H, W)
        with torch.no_grad():
            tokens, global_feat = encode_image_tokens(model, images)
            assert tokens.shape == (2, 50, 48)
            # ln_post(CLS) @ proj is exactly open_clip's image embedding.
            torch.testing.assert_close(
                visual.ln_post(tokens[:, 0]) @ visual.proj,
                model.encode_image(images), rtol=0, atol=1e-6)
            torch.testing.assert_close(global_feat,
                                       model.encode_image(images))
            # Recomputed by hand: embeddings, then every block.
            manual = visual.transformer(visual._embeds(images))
            torch.testing.assert_close(tokens, manual)
            # open_clip's own output_tokens are the same tokens *after*
            # ln_post, which ours are not.
            visual.output_tokens = True
            _, after = visual(images)
            visual.output_tokens = False
            torch.testing.assert_close(visual.ln_post(tokens[:, 1:]), after)
            assert (tokens[:, 1:] - after).abs().max() > 0.1

    def test_pooling_averages_2x2_blocks_row_major(self):
        import torch

        from pcm_plugin.clip.clip_features import pool_patch_grid
        grid = torch.arange(16, dtype=torch.float32)  # 4x4, row-major
        patch = torch.stack([grid, -grid], dim=-1)[None]  # (1, 16, 2)
        pooled = pool_patch_grid(patch, (4, 4), 2)
        # Blocks {0,1,4,5}, {2,3,6,7}, {8,9,12,13}, {10,11,14,15}.
        expected = torch.tensor([2.5, 4.5, 10.5, 12.5])
        torch.testing.assert_close(pooled[0, :, 0], expected)
        torch.testing.assert_close(pooled[0, :, 1], -expected)
        assert pool_patch_grid(patch, (4, 4), 1) is patch

    def test_resolve_pool(self):
        from pcm_plugin.clip.clip_features import resolve_pool
        assert resolve_pool((16, 16), 'auto') == 2
        assert resolve_pool((7, 7), 'auto') == 1
        assert resolve_pool((16, 16), 4) == 4
        with pytest.raises(ValueError, match='--pool 2 does not divide the '
                           '7x7'):
            resolve_pool((7, 7), 2)

    @pytest.mark.parametrize('name, patch_shape, global_dim', [
        ('pcm-tiny-vit-b32', (49, 48), 32),
        ('pcm-tiny-vit-l14', (64, 64), 40)])
    def test_feature_shapes_of_both_layouts(self, clips, name, patch_shape,
                                            global_dim):
        import torch

        from pcm_plugin.clip.clip_features import (
            encode_image_tokens,
            extract_batch,
            feature_shapes,
            resolve_pool,
        )
        model, _, _ = load(clips, name)
        pool = resolve_pool(tuple(model.visual.grid_size), 'auto')
        images = torch.randn(3, 3, 224, 224)  # (B, 3, H, W)
        patch, global_feat = extract_batch(model, images, pool=pool)
        assert patch.shape == (3, *patch_shape)
        assert global_feat.shape == (3, global_dim)
        shapes = feature_shapes(model, pool)
        assert shapes['patch_shape'] == list(patch_shape)
        assert shapes['global_dim'] == global_dim
        if pool == 2:  # row 0 of the 8x8 grid = mean of raw (0,0)..(1,1)
            with torch.no_grad():
                tokens, _ = encode_image_tokens(model, images)
            raw = tokens[:, 1:].reshape(3, 16, 16, -1)  # (B, 16, 16, W)
            torch.testing.assert_close(patch[:, 0],
                                       raw[:, :2, :2].mean((1, 2)))

    def test_caption_cosine_and_nan_without_caption(self, clips):
        import torch
        import torch.nn.functional as F

        from pcm_plugin.clip.clip_features import caption_cosine
        model, _, tokenizer = load(clips)
        global_feat = torch.randn(3, 32)
        cos = caption_cosine(model, tokenizer, global_feat,
                             ['a dog', None, 'un café'])
        with torch.no_grad():
            text = model.encode_text(tokenizer(['a dog', 'un café']))
        expected = F.cosine_similarity(global_feat[[0, 2]], text, dim=-1)
        torch.testing.assert_close(cos[[0, 2]], expected)
        assert torch.isnan(cos[1])


class TestLoadOpenClip:

    def test_wrong_architecture_names_file_and_model(self, clips):
        from pcm_plugin.clip.clip_features import load_open_clip
        _, l14_ckpt, _ = clips['pcm-tiny-vit-l14']
        with pytest.raises(ValueError) as info:
            load_open_clip('pcm-tiny-vit-b32', checkpoint=l14_ckpt)
        message = str(info.value)
        assert l14_ckpt in message and "'pcm-tiny-vit-b32'" in message
        assert 'size mismatch' in message

    def test_not_a_checkpoint(self, tmp_path, clips):
        from pcm_plugin.clip.clip_features import load_open_clip
        path = tmp_path / 'junk.pt'
        path.write_bytes(b'not a torch file')
        with pytest.raises(ValueError, match=f'checkpoint {path} does not '
                           "fit open_clip model 'pcm-tiny-vit-b32'"):
            load_open_clip('pcm-tiny-vit-b32', checkpoint=str(path))

    def test_weight_source_errors(self, clips, tmp_path):
        from pcm_plugin.clip.clip_features import load_open_clip
        _, ckpt, _ = clips['pcm-tiny-vit-b32']
        with pytest.raises(ValueError, match='exactly one of'):
            load_open_clip('pcm-tiny-vit-b32', checkpoint=ckpt,
                           pretrained='openai')
        with pytest.raises(ValueError, match='unknown open_clip model'):
            load_open_clip('no-such-model', checkpoint=ckpt)
        with pytest.raises(FileNotFoundError, match='missing.pt not found'):
            load_open_clip('ViT-B-32', checkpoint=str(tmp_path / 'missing.pt'))
        with pytest.raises(ValueError, match="'nope' is not an open_clip tag"
                           ".*openai"):
            load_open_clip('ViT-B-32', pretrained='nope')

    def test_uncached_pretrained_tag_fails_without_download(self, tmp_path,
                                                            monkeypatch):
        from pcm_plugin.clip.clip_features import load_open_clip
        monkeypatch.setenv('HF_HUB_OFFLINE', '1')
        with pytest.raises(FileNotFoundError,
                           match='ViT-B-32/openai are not in the local cache'):
            load_open_clip('ViT-B-32', pretrained='openai',
                           cache_dir=str(tmp_path))

    def test_custom_config_and_non_vit_tower(self, tmp_path):
        import open_clip
        import torch

        from pcm_plugin.clip.clip_features import load_open_clip
        config = dict(embed_dim=16, vision_cfg=dict(
            image_size=64, layers=[1, 1, 1, 1], width=8, head_width=8),
            text_cfg=dict(context_length=77, vocab_size=49408, width=16,
                          heads=2, layers=1))
        path = tmp_path / 'pcm-test-resnet.json'
        path.write_text(json.dumps(config))
        open_clip.add_model_config(str(path))
        ckpt = str(tmp_path / 'resnet.pt')
        torch.save(open_clip.create_model('pcm-test-resnet').state_dict(),
                   ckpt)
        with pytest.raises(ValueError, match='ModifiedResNet is not a ViT'):
            load_open_clip('pcm-test-resnet', checkpoint=ckpt,
                           model_config=str(path))
        (tmp_path / 'bad.json').write_text('{"embed_dim": 3}')
        with pytest.raises(ValueError, match='not an open_clip model config'):
            load_open_clip('x', checkpoint=ckpt,
                           model_config=str(tmp_path / 'bad.json'))


class TestExtractFeatures:

    def test_store_holds_the_direct_features(self, reference_store, dataset,
                                             clips):
        ann, image_dir = dataset
        root, summary = reference_store
        assert (summary['extracted'], summary['skipped_bad']) == (5, 0)
        index = json.load(open(osp.join(root, 'index.json')))
        assert [s['name'] for s in index['shards']] == [
            'shard-00000', 'shard-00001', 'shard-00002']
        assert index['patch_shape'] == [49, 48]
        assert index['meta']['pool'] == 1
        paths = [osp.join(image_dir, f'{6000000 + k}.{e}') for k, e in
                 enumerate(['png', 'png', 'png', 'jpg', 'png'])]
        patch, global_feat, cos = direct_features(clips, paths, CAPTIONS)
        arrays = store_arrays(root)
        assert list(arrays) == [str(6000000 + k) for k in range(5)]
        for k, item in enumerate(arrays.values()):
            np.testing.assert_allclose(item['patch'], patch[k], rtol=2e-3,
                                       atol=2e-3)
            np.testing.assert_allclose(item['global_feat'], global_feat[k],
                                       rtol=2e-3, atol=2e-3)
            assert item['clip_cos'] == pytest.approx(float(cos[k]),
                                                     abs=1e-5)

    def test_test_split_by_file_name_has_nan_cosine(self, tmp_path, dataset,
                                                    clips):
        _, image_dir = dataset
        ann = tmp_path / 'test.json'
        ann.write_text(json.dumps(dict(data_list=[
            dict(image_id='391895', file_name='6000003.jpg',
                 captions=['a', 'b']),
            dict(image_id='7', file_name='6000000.png', captions=['c'])])))
        extract(str(ann), image_dir, tmp_path / 'store', clips,
                name='pcm-tiny-vit-l14')
        arrays = store_arrays(str(tmp_path / 'store'))
        assert sorted(arrays) == ['391895', '7']
        assert arrays['7']['patch'].shape == (64, 64)
        assert arrays['7']['global_feat'].shape == (40,)
        assert np.isnan(arrays['7']['clip_cos'])

    def test_rerun_skips_complete_shards(self, reference_store, dataset,
                                         clips):
        ann, image_dir = dataset
        root, _ = reference_store
        before = {n: os.stat(osp.join(root, n)).st_mtime_ns
                  for n in os.listdir(root) if n.startswith('shard')}
        summary = extract(ann, image_dir, root, clips)
        assert (summary['extracted'], summary['skipped_existing']) == (0, 5)
        assert before == {n: os.stat(osp.join(root, n)).st_mtime_ns
                          for n in os.listdir(root) if n.startswith('shard')}

    def test_other_settings_refuse_to_resume(self, reference_store, dataset,
                                             clips):
        ann, image_dir = dataset
        root, _ = reference_store
        with pytest.raises(ValueError, match='other settings.*shard_size: '
                           '2 -> 3'):
            extract(ann, image_dir, root, clips, shard_size=3)

    def test_crash_then_rerun_equals_one_run(self, reference_store, dataset,
                                             clips, tmp_path, monkeypatch):
        from pcm_plugin.data_prep import extraction
        ann, image_dir = dataset
        out = tmp_path / 'store'
        real_write = extraction._ShardRunner._write

        def die_on_second_shard(self, shard, buffer):
            if shard == 1:
                raise KeyboardInterrupt('killed')
            return real_write(self, shard, buffer)

        monkeypatch.setattr(extraction._ShardRunner, '_write',
                            die_on_second_shard)
        with pytest.raises(KeyboardInterrupt):
            extract(ann, image_dir, out, clips)
        monkeypatch.setattr(extraction._ShardRunner, '_write', real_write)
        assert not (out / 'index.json').exists()
        (out / 'shard-00001.patch.npy.tmp4242').write_bytes(b'half')
        summary = extract(ann, image_dir, out, clips)
        assert (summary['extracted'], summary['skipped_existing']) == (3, 2)
        assert not [n for n in os.listdir(out) if '.tmp' in n]
        ref = store_arrays(reference_store[0])
        got = store_arrays(str(out))
        assert list(got) == list(ref)
        for image_id in ref:
            np.testing.assert_array_equal(got[image_id]['patch'],
                                          ref[image_id]['patch'])

    def test_disk_full_keeps_complete_shards_only(self, reference_store,
                                                  dataset, clips, tmp_path,
                                                  monkeypatch):
        from pcm_plugin.datasets.feature_store import shard_is_complete
        ann, image_dir = dataset
        out = tmp_path / 'store'
        real_fsync, calls = os.fsync, []

        def full_disk(fd):
            calls.append(fd)
            # 1 extract_config.json + 4 files of shard 0, then shard 1.
            if len(calls) == 6:
                raise OSError(errno.ENOSPC, 'No space left on device')
            return real_fsync(fd)

        monkeypatch.setattr(os, 'fsync', full_disk)
        with pytest.raises(OSError, match=r'^disk full \(or quota\) writing '
                           r'.*shard-00001\.patch\.npy \(.*No space left.*\); '
                           r'free space \(or raise the quota\) and re-run the '
                           'same command to resume: the 1 shards already '
                           'written'):
            extract(ann, image_dir, out, clips)
        monkeypatch.setattr(os, 'fsync', real_fsync)
        assert shard_is_complete(str(out), 'shard-00000')
        assert not shard_is_complete(str(out), 'shard-00001')
        assert not (out / 'index.json').exists()
        assert not [n for n in os.listdir(out) if '.tmp' in n]
        kept = os.stat(out / 'shard-00000.patch.npy').st_mtime_ns
        extract(ann, image_dir, out, clips)
        assert os.stat(out / 'shard-00000.patch.npy').st_mtime_ns == kept
        assert len(store_arrays(str(out))) == 5

    def test_merge_index_names_missing_shards(self, tmp_path, dataset,
                                              clips, monkeypatch):
        from pcm_plugin.data_prep import extraction
        ann, image_dir = dataset
        out = tmp_path / 'store'
        monkeypatch.setattr(extraction, 'owned_by_rank',
                            lambda n, r, w: [0])  # as if rank 1 never ran
        with pytest.raises(FileNotFoundError, match='2 of 3 shards are not '
                           'complete .shard-00001, shard-00002'):
            extract(ann, image_dir, out, clips)


class TestBadImages:

    @pytest.fixture
    def bad_folder(self, tmp_path):
        folder = tmp_path / 'images'
        write_images(str(folder))
        good = (folder / '6000000.png').read_bytes()
        (folder / '6000001.png').write_bytes(b'')  # zero-byte
        (folder / '6000002.png').write_bytes(good[:len(good) // 2])
        (folder / '6000004.png').write_bytes(b'garbage' * 20)
        from PIL import Image
        Image.new('RGB', (1100, 1000)).save(folder / '6000005.png')
        ann = write_train_ann(tmp_path / 'train.json',
                              CAPTIONS + ['huge', 'missing'])
        return ann, str(folder)

    def test_first_bad_image_stops_with_its_name(self, bad_folder, clips,
                                                 tmp_path):
        from pcm_plugin.data_prep.bad_input import BadInputError
        ann, folder = bad_folder
        with pytest.raises(BadInputError, match='6000001.png: zero-byte '
                           'file.*--skip-bad'):
            extract(ann, folder, tmp_path / 'store', clips,
                    max_pixels=1_000_000)
        assert not (tmp_path / 'store' / 'index.json').exists()

    def test_skip_bad_counts_and_lists_them(self, bad_folder, clips,
                                            tmp_path):
        ann, folder = bad_folder
        summary = extract(ann, folder, tmp_path / 'store', clips,
                          max_pixels=1_000_000, skip_bad=True)
        assert (summary['extracted'], summary['skipped_bad']) == (2, 5)
        index = json.load(open(tmp_path / 'store' / 'index.json'))
        reasons = {s['image_id']: s['reason']
                   for s in index['meta']['skipped']}
        assert 'zero-byte' in reasons['6000001']
        assert 'truncated' in reasons['6000002']
        assert 'not a readable image' in reasons['6000004']
        assert 'exceeds --max-pixels 1000000' in reasons['6000005']
        assert 'not found' in reasons['6000006']
        assert index['meta']['num_skipped'] == 5
        assert sorted(store_arrays(str(tmp_path / 'store'))) == [
            '6000000', '6000003']
