"""A mini-world training set through the official release's layout and
back (tools/data/import_official.py's functions) trains the same: the
same batches and the same weights, bit for bit."""
import os.path as osp

import torch

from pcm_plugin.data_prep.official_data import (
    export_items,
    export_official_annotations,
    import_official_annotations,
)
from pcm_plugin.data_prep.official_features import (
    export_official_features,
    import_official_features,
)
from pcm_plugin.data_prep.vocab import build_tokenizer_file
from projects.mini_world.pcm_mini_world.runs import world_config

CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                  'configs', 'pcm_shapes.py')
TRAIN_SET = 'synth_d050'


def _through_the_official_layout(ann: str, feats: str, tokenizer: str,
                                 root: str) -> dict:
    pkl, vocab = osp.join(root, 'train.pkl'), osp.join(root, 'vocab.txt')
    export_official_annotations(ann, tokenizer, pkl, vocab, feature_dir=feats)
    folder = osp.join(root, 'feats')
    export_official_features(feats, export_items(ann), folder)
    written = import_official_annotations(pkl, vocab, root, split='train')
    store = osp.join(root, 'store')
    import_official_features(written['annotation'], feats_folder=folder,
                             out_dir=store)
    return dict(ann=written['annotation'], feats=store,
                tokenizer=written['tokenizer'])


def _train(world, data: dict, work_dir: str):
    from mmengine.runner import Runner
    cfg = world_config(CONFIG, world, work_dir=work_dir, train_set=TRAIN_SET,
                       max_epochs=1, seed=0)
    cfg.train_dataloader.dataset.update(ann_file=data['ann'],
                                        feature_dir=data['feats'])
    cfg.train_dataloader.batch_size = 8
    cfg.model.tokenizer = data['tokenizer']
    cfg.train_cfg.val_interval = 10  # no validation
    cfg.default_hooks.checkpoint.update(interval=10)
    cfg.experiment_name = f'round_trip{abs(hash(work_dir))}'
    runner = Runner.from_cfg(cfg)
    batches = [(b['data_samples'][0].image_id, b['data_samples'][0].clip_cos,
                b['inputs']['patch_feats'].clone())
               for b in runner.train_dataloader]
    runner.train()
    return batches, runner.model.state_dict()


def test_mini_world_through_the_official_layout_trains_the_same(tiny_world,
                                                                tmp_path):
    _, world, _ = tiny_world
    root = world['root']
    ann = osp.join(root, world['annotations']['train'])
    # Every word kept: the official vocabulary has no [UNK] row, and the
    # tiny world's 24 captions leave words below the default min_count.
    tokenizer = str(tmp_path / 'tokenizer.json')
    build_tokenizer_file(ann, tokenizer, min_count=1)
    feats = osp.join(root, world['features'][TRAIN_SET])
    original = dict(ann=ann, feats=feats, tokenizer=tokenizer)
    official = _through_the_official_layout(
        original['ann'], original['feats'], original['tokenizer'],
        str(tmp_path / 'official'))
    a_batches, a_state = _train(world, original, str(tmp_path / 'a'))
    b_batches, b_state = _train(world, official, str(tmp_path / 'b'))
    assert len(a_batches) == len(b_batches) == 3  # 24 captions / batch 8
    for (i, c, p), (j, d, q) in zip(a_batches, b_batches):
        assert (i, c) == (j, d) and torch.equal(p, q)
    assert a_state.keys() == b_state.keys()
    for key, value in a_state.items():
        assert torch.equal(value, b_state[key]), key
