"""The benchmark's training-data rows: both layouts give the model the same
batch, and a tiny run fills every row (no timing asserted)."""
import torch
from mmengine.dataset import default_collate

from pcm_plugin.models import CaptionFeaturePreprocessor
from projects.benchmarks.pcm_benchmarks import data_speed

TINY = dict(patches=3, patch_dim=8, global_dim=4)


def test_store_and_npz_rows_read_the_same_features(tmp_path):
    layouts = data_speed.write_layouts(str(tmp_path), num=6, size=TINY)
    preprocessor = CaptionFeaturePreprocessor()
    batches = {}
    for row in ('store', 'store_fp32', 'npz'):
        ds = data_speed.build_dataset(layouts, row)
        batches[row] = preprocessor(default_collate([ds[i] for i in
                                                     range(6)]), True)
    for row in ('store_fp32', 'npz'):
        for key in ('patch_feats', 'global_feat'):
            assert torch.equal(batches[row]['inputs'][key],
                               batches['store']['inputs'][key]), (row, key)
        # The cosines: the store's file, the npz row's annotation.
        assert [s.clip_cos for s in batches[row]['data_samples']] == [
            s.clip_cos for s in batches['store']['data_samples']]
    assert layouts['bytes_store'] < layouts['bytes_npz']


def test_tiny_run_fills_every_row(tmp_path):
    data = data_speed.data_loading(str(tmp_path), num=64, size=TINY,
                                   workers=(0, ), reps=1)
    assert set(data['rows']) == {f'{r}_workers0' for r in data_speed.ROWS}
    assert all(r['samples_per_s'] > 0 for r in data['rows'].values())
    assert data['store_over_npz_workers0'] > 0
    assert data['store_over_npz_loader_only_workers0'] > 0
    assert set(data['profile']) == {'store', 'npz'}
    assert data['profile']['store']['samples'] == 64
    lines = data_speed.format_tables(data)
    assert any(line.startswith('| store / npz |') for line in lines)
