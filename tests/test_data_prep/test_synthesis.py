"""Tests for pcm_plugin.data_prep.synthesis (tiny random SD pipeline)."""
import errno
import hashlib
import json
import os
import os.path as osp

import pytest

CAPTIONS = ['a dog on a sofa', 'un café à Paris, 東京 🚲', 'two cats',
            '   ', 'a red car']
SETTINGS = dict(steps=2, guidance=7.5, size='64', seed=0, batch_size=2)


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def pipe_dir(tmp_path_factory):
    from pcm_plugin.testing import build_tiny_sd_pipeline
    return build_tiny_sd_pipeline(str(tmp_path_factory.mktemp('sd')))


def write_ann(path, captions=CAPTIONS, first_id=6000000):
    data = dict(metainfo=dict(split='train'), data_list=[
        dict(image_id=str(first_id + i), caption=c)
        for i, c in enumerate(captions)])
    path.write_text(json.dumps(data, ensure_ascii=False), encoding='utf-8')
    return str(path)


def image_bytes(out_dir):
    folder = osp.join(out_dir, 'images')
    return {name: open(osp.join(folder, name), 'rb').read()
            for name in sorted(os.listdir(folder))}


def run(ann, pipe_dir, out_dir, **kwargs):
    from pcm_plugin.data_prep.synthesis import synthesize
    options = dict(SETTINGS, skip_bad=True, progress=False)
    options.update(kwargs)
    return synthesize(ann, model_dir=pipe_dir, out_dir=str(out_dir),
                      **options)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, pipe_dir):
    """One uninterrupted run: (annotation, out dir, summary)."""
    root = tmp_path_factory.mktemp('ref')
    ann = write_ann(root / 'train.json')
    summary = run(ann, pipe_dir, root / 'out')
    return ann, str(root / 'out'), summary


class TestCaptions:

    def test_seed_is_a_stable_hash_of_seed_and_id(self):
        from pcm_plugin.data_prep.synthesis import caption_seed
        assert caption_seed(0, '6000000') == caption_seed(0, '6000000')
        seeds = {caption_seed(s, i) for s in (0, 1) for i in ('1', '2')}
        assert len(seeds) == 4
        assert 0 <= caption_seed(0, 'x') < 2 ** 63
        expected = int.from_bytes(hashlib.sha256(b'3:abc').digest()[:8],
                                  'little') & (2 ** 63 - 1)
        assert caption_seed(3, 'abc') == expected

    def test_empty_caption_is_an_error_or_a_counted_skip(self, tmp_path):
        from pcm_plugin.data_prep.bad_input import (
            BadInputError,
            BadInputPolicy,
        )
        from pcm_plugin.data_prep.synthesis import load_captions
        ann = write_ann(tmp_path / 'train.json')
        with pytest.raises(BadInputError, match=r'train.json: '
                           r'data_list\[3\] \(image_id 6000003\): empty'):
            load_captions(ann, BadInputPolicy())
        policy = BadInputPolicy(skip_bad=True)
        pairs, skipped = load_captions(ann, policy)
        assert [p[0] for p in pairs] == ['6000000', '6000001', '6000002',
                                         '6000004']
        assert pairs[1][1] == CAPTIONS[1]  # non-ASCII kept verbatim
        assert skipped == [dict(image_id='6000003',
                                reason="empty caption '   '")]
        assert policy.num_skipped == 1

    @pytest.mark.parametrize('entries, message', [
        ([dict(image_id='1', caption='a'), dict(image_id='1', caption='b')],
         "image_id '1' appears twice"),
        ([dict(image_id='1', captions=['a'])], 'no `caption` key'),
        ([dict(image_id='../x', caption='a')], 'cannot be a file name'),
        ([dict(caption='a')], 'not an object with an `image_id`'),
    ])
    def test_structural_errors_always_raise(self, tmp_path, entries,
                                            message):
        from pcm_plugin.data_prep.bad_input import BadInputPolicy
        from pcm_plugin.data_prep.synthesis import load_captions
        path = tmp_path / 'ann.json'
        path.write_text(json.dumps(dict(data_list=entries)))
        with pytest.raises(ValueError, match=message):
            load_captions(str(path), BadInputPolicy(skip_bad=True))

    def test_parse_size(self):
        from pcm_plugin.data_prep.synthesis import parse_size
        assert parse_size(None) is None
        assert parse_size('512') == (512, 512)
        assert parse_size('768x512') == (512, 768)
        for bad in ('abc', '500', '1x2x3'):
            with pytest.raises(ValueError, match='--size'):
                parse_size(bad)


class TestLoadPipeline:

    def test_missing_dir_and_non_pipeline_dir(self, tmp_path, pipe_dir):
        from pcm_plugin.data_prep.synthesis import load_pipeline
        with pytest.raises(FileNotFoundError, match='nope not found'):
            load_pipeline(str(tmp_path / 'nope'))
        with pytest.raises(FileNotFoundError,
                           match='unet is not a diffusers pipeline'):
            load_pipeline(osp.join(pipe_dir, 'unet'))
        with pytest.raises(ValueError, match='fp16 is not supported on CPU'):
            load_pipeline(pipe_dir, dtype='fp16')

    def test_default_size_of_the_tiny_pipeline(self, pipe_dir):
        from pcm_plugin.data_prep.synthesis import (
            default_image_size,
            load_pipeline,
        )
        assert default_image_size(load_pipeline(pipe_dir)) == (64, 64)


class TestFingerprint:

    def test_moved_copy_matches_other_weights_do_not(self, pipe_dir,
                                                     tmp_path):
        import shutil

        from pcm_plugin.data_prep.synthesis import pipeline_fingerprint
        from pcm_plugin.testing import build_tiny_sd_pipeline
        copy = shutil.copytree(pipe_dir, tmp_path / 'moved')
        (copy / '.cache').mkdir()
        (copy / '.cache' / 'lock').write_text('x')  # hub bookkeeping
        assert pipeline_fingerprint(str(copy)) == pipeline_fingerprint(
            pipe_dir)
        other = build_tiny_sd_pipeline(str(tmp_path / 'other'), seed=1)
        assert pipeline_fingerprint(other) != pipeline_fingerprint(pipe_dir)


class TestSynthesize:

    def test_one_verified_png_per_valid_caption(self, reference):
        from PIL import Image
        ann, out, summary = reference
        assert (summary['generated'], summary['skipped_bad'],
                summary['skipped_existing']) == (4, 1, 0)
        files = image_bytes(out)
        assert sorted(files) == ['6000000.png', '6000001.png', '6000002.png',
                                 '6000004.png']
        manifest = json.load(open(osp.join(out, 'manifest.json')))
        assert manifest['complete'] and manifest['num_images'] == 4
        assert manifest['settings']['steps'] == 2
        assert manifest['skipped_bad'][0]['image_id'] == '6000003'
        for record in manifest['images']:
            data = files[osp.basename(record['file'])]
            assert record['sha256'] == hashlib.sha256(data).hexdigest()
            assert record['bytes'] == len(data)
        with Image.open(osp.join(out, 'images', '6000001.png')) as image:
            assert image.size == (64, 64) and image.mode == 'RGB'
        assert not [n for n in os.listdir(out) if n.endswith('.jsonl')]
        assert len(set(files.values())) == 4  # different captions, images

    def test_rerun_skips_everything_and_changes_nothing(self, reference,
                                                        pipe_dir):
        ann, out, _ = reference
        before = image_bytes(out)
        manifest = open(osp.join(out, 'manifest.json')).read()
        summary = run(ann, pipe_dir, out)
        assert (summary['generated'], summary['skipped_existing']) == (0, 4)
        assert image_bytes(out) == before
        assert open(osp.join(out, 'manifest.json')).read() == manifest

    def test_other_settings_refuse_to_resume(self, reference, pipe_dir):
        ann, out, _ = reference
        with pytest.raises(ValueError, match='steps: 2 -> 3'):
            run(ann, pipe_dir, out, steps=3)

    def test_limit_then_full_run_equals_one_run(self, reference, pipe_dir,
                                                tmp_path):
        ann, ref_out, _ = reference
        out = tmp_path / 'out'
        summary = run(ann, pipe_dir, out, limit=3)
        assert summary['generated'] == 3
        assert not json.load(open(out / 'manifest.json'))['complete']
        summary = run(ann, pipe_dir, out)
        assert (summary['generated'], summary['skipped_existing']) == (1, 3)
        # Image 3 shared a batch with image 4 in both runs: same bytes.
        assert image_bytes(str(out)) == image_bytes(ref_out)
        assert open(out / 'manifest.json').read() == open(
            osp.join(ref_out, 'manifest.json')).read().replace(
                ref_out, str(out))

    def test_crash_then_rerun_is_complete_and_duplicate_free(
            self, reference, pipe_dir, tmp_path, monkeypatch):
        from pcm_plugin.data_prep import synthesis
        ann, ref_out, _ = reference
        out = tmp_path / 'out'
        real_write, calls = synthesis.write_image, []

        def crash_on_second(*args, **kwargs):
            record = real_write(*args, **kwargs)  # the PNG reaches disk...
            calls.append(record)
            if len(calls) == 2:  # ...but the process dies before its line
                raise KeyboardInterrupt('killed')
            return record

        monkeypatch.setattr(synthesis, 'write_image', crash_on_second)
        with pytest.raises(KeyboardInterrupt):
            run(ann, pipe_dir, out)
        monkeypatch.setattr(synthesis, 'write_image', real_write)
        # What a SIGKILL leaves: a temp file and a half-written line.
        (out / 'images' / '6000004.png.tmp999').write_bytes(b'partial')
        with open(out / 'manifest.rank0.jsonl', 'a') as part:
            part.write('{"image_id": "6000002", "fi')
        assert not (out / 'manifest.json').exists()

        summary = run(ann, pipe_dir, out)
        assert (summary['generated'], summary['skipped_existing'],
                summary['recovered']) == (2, 2, 1)
        assert image_bytes(str(out)) == image_bytes(ref_out)
        manifest = json.load(open(out / 'manifest.json'))
        ids = [r['image_id'] for r in manifest['images']]
        assert ids == ['6000000', '6000001', '6000002', '6000004']
        assert not [n for n in os.listdir(out) if n.endswith('.jsonl')]

    def test_disk_full_keeps_finished_images(self, reference, pipe_dir,
                                             tmp_path, monkeypatch):
        ann, ref_out, _ = reference
        out = tmp_path / 'out'
        real_fsync, calls = os.fsync, []

        def full_disk(fd):
            calls.append(fd)
            if len(calls) == 3:  # the third PNG's data does not fit
                raise OSError(errno.ENOSPC, 'No space left on device')
            return real_fsync(fd)

        monkeypatch.setattr(os, 'fsync', full_disk)
        with pytest.raises(OSError, match=r'^disk full \(or quota\) writing '
                           r'.*6000002.png \(\[Errno 28\] No space left on '
                           r'device\); free space and re-run'):
            run(ann, pipe_dir, out)
        monkeypatch.setattr(os, 'fsync', real_fsync)
        kept = image_bytes(str(out))
        assert sorted(kept) == ['6000000.png', '6000001.png']  # no temp
        assert all(kept[n] == image_bytes(ref_out)[n] for n in kept)
        summary = run(ann, pipe_dir, out)
        assert (summary['generated'], summary['skipped_existing']) == (2, 2)
        assert image_bytes(str(out)) == image_bytes(ref_out)
