"""The cached mini-world preparation: layout, formats, stamps."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from projects.mini_world.pcm_mini_world.prepare import prepare_world
from projects.mini_world.pcm_mini_world.world import synth_name
from projects.mini_world.pcm_mini_world.world_steps import read_stamp, run_step


def test_run_step_skips_matching_stamp_and_rebuilds_on_change(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        with open(osp.join(folder, 'out.txt'), 'w') as f:
            f.write(str(len(calls)))
        return dict(n=len(calls))

    folder = str(tmp_path / 'step')
    logs = []
    first = run_step('demo', folder, dict(a=1), build, logs.append)
    again = run_step('demo', folder, dict(a=1), build, logs.append)
    assert len(calls) == 1 and first == again and 'cached' in logs[-1]
    # A stale extra file disappears on rebuild.
    open(osp.join(folder, 'stale.txt'), 'w').close()
    changed = run_step('demo', folder, dict(a=2), build, logs.append)
    assert len(calls) == 2 and changed['digest'] != first['digest']
    assert sorted(os.listdir(folder)) == ['done.json', 'out.txt']
    # An interrupted build leaves no stamp, so the next run rebuilds.
    def crash(folder):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_step('demo', folder, dict(a=3), crash, logs.append)
    assert read_stamp(folder) is None


def test_synth_name():
    assert synth_name(0.3) == 'synth_d030' and synth_name(0) == 'synth_d000'
    with pytest.raises(ValueError):
        synth_name(1.2)


def _load(world, rel):
    with open(osp.join(world['root'], rel)) as f:
        return json.load(f)


def test_annotation_files_follow_the_architecture(tiny_world):
    _, world, _ = tiny_world
    train = _load(world, world['annotations']['train'])
    assert len(train['data_list']) == 24
    assert train['data_list'][0] == dict(image_id='6000000',
                                         caption=train['data_list'][0][
                                             'caption'])
    test = _load(world, world['annotations']['test'])
    entry = test['data_list'][0]
    assert set(entry) == {'image_id', 'file_name', 'captions'}
    assert len(entry['captions']) == 5 and int(entry['image_id'])
    assert osp.isfile(osp.join(world['root'], 'images/real',
                               entry['file_name']))
    gt = _load(world, world['annotations']['test_gt'])
    assert [im['id'] for im in gt['images']] == [
        int(e['image_id']) for e in test['data_list']]
    assert len(gt['annotations']) == 4 * 5
    assert gt['annotations'][0]['image_id'] == int(entry['image_id'])


def test_defect_rates_differ_only_in_defective_images(tiny_world):
    from PIL import Image
    _, world, _ = tiny_world
    root = world['root']
    defects = _load(world, 'images/synth_d050/defects.json')
    clean = _load(world, 'images/synth_d000/defects.json')
    assert set(clean.values()) == {None}
    assert 0 < sum(d is not None for d in defects.values()) < 24
    for image_id, defect in defects.items():
        a = np.asarray(Image.open(f'{root}/images/synth_d000/{image_id}.png'))
        b = np.asarray(Image.open(f'{root}/images/synth_d050/{image_id}.png'))
        assert (defect is None) == np.array_equal(a, b), image_id


def test_feature_stores_concepts_and_tokenizer(tiny_world):
    from pcm_plugin.datasets.feature_store import FeatureStore
    from pcm_plugin.models.concept_bank import load_concept_bank
    from pcm_plugin.models.tokenizer import load_caption_tokenizer
    from projects.mini_world.pcm_mini_world.mini_clip import MINI_CLIP_CONFIG
    _, world, _ = tiny_world
    root = world['root']
    train = FeatureStore(osp.join(root, world['features']['synth_d050']))
    width = MINI_CLIP_CONFIG['vision_cfg']['width']
    assert len(train) == 24 and train.patch_shape == (64, width)
    item = train.get('6000003')
    assert item['global_feat'].shape == (64,)
    assert np.isfinite(item['clip_cos'])
    test = FeatureStore(osp.join(root, world['features']['test']))
    assert sorted(test.ids) == ['200000', '200001', '200002', '200003']
    assert np.isnan(test.get('200000')['clip_cos'])
    words, emb, meta = load_concept_bank(osp.join(root,
                                                  world['concept_bank']))
    assert {'circle', 'red', 'snow'} <= set(words) and emb.shape[1] == 64
    tokenizer = load_caption_tokenizer(osp.join(root, world['tokenizer']))
    assert tokenizer.convert_tokens_to_ids('red') > 2


def test_second_run_is_cached(tiny_world):
    settings, world, logs = tiny_world
    assert not any('cached' in line for line in logs[:-1])
    stamp = osp.join(world['root'], 'features/synth_d000/done.json')
    mtime = os.stat(stamp).st_mtime_ns
    again = []
    prepare_world(settings, progress=False, log=again.append)
    assert all('cached' in line for line in again[:-1]), again
    assert os.stat(stamp).st_mtime_ns == mtime


def test_pcm_shapes_default_paths_are_the_prepared_layout(tiny_world):
    """``tools/train.py projects/mini_world/configs/pcm_shapes.py`` reads
    what prepare wrote."""
    from mmengine.config import Config

    from projects.mini_world.pcm_mini_world.runs import world_config
    _, world, _ = tiny_world
    config = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs', 'pcm_shapes.py')
    default = Config.fromfile(config)
    placed = world_config(config, world, work_dir='w', train_set='synth_d050')

    def relocated(path):  # the config's default root -> this world's root
        assert path.startswith(default.world + '/'), path
        return osp.join(world['root'], path[len(default.world) + 1:])

    def paths(cfg):
        out = dict(tokenizer=cfg.model.tokenizer,
                   bank=cfg.model.mixup.concept_bank,
                   head=cfg.model.mixup.clip_head,
                   clip_ckpt=cfg.clip_model.checkpoint,
                   clip_cfg=cfg.clip_model.model_config,
                   train_ann=cfg.train_dataloader.dataset.ann_file)
        for split in ('val', 'test'):
            out[split] = cfg[f'{split}_dataloader'].dataset.feature_dir
            out[split + '_ann'] = cfg[f'{split}_dataloader'].dataset.ann_file
            out[split + '_gt'] = cfg[f'{split}_evaluator'].ann_file
        return out

    assert {k: relocated(v) for k, v in paths(default).items()} == paths(
        placed)
    assert osp.basename(default.train_dataloader.dataset.feature_dir) == (
        synth_name(0.3))
    for path in paths(placed).values():
        assert osp.exists(path), path
