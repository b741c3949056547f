"""A toy feature dataset on disk, for Runner-level tests and tool smoke runs.

Each caption comes from a small grammar; its "image" features are a fixed
random code of the caption's words plus noise, so a captioner can actually
learn the mapping in a few hundred steps. Everything is written in the
project's real formats (annotation JSON, feature store, COCO ground truth,
tokenizer, concept bank), so it exercises the same loading code as COCO.
"""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import numpy as np
import torch
from mmengine.config import Config

from pcm_plugin.data_prep.annotations import TRAIN_ID_START
from pcm_plugin.datasets.feature_store import write_feature_store
from pcm_plugin.models.concept_bank import save_concept_bank
from pcm_plugin.models.tokenizer import (
    build_word_tokenizer,
    count_words,
    save_tokenizer,
)

COLOURS = ('red', 'green', 'blue', 'yellow')
SHAPES = ('circle', 'square', 'triangle')


def _caption(rng: np.random.Generator) -> Tuple[str, Tuple[int, int]]:
    c, s = int(rng.integers(len(COLOURS))), int(rng.integers(len(SHAPES)))
    return f'a {COLOURS[c]} {SHAPES[s]}', (c, s)


def _features(codes: np.ndarray, label: Tuple[int, int], num_patches: int,
              rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    c, s = label
    patch = rng.standard_normal((num_patches, codes.shape[1])) * 0.3
    patch[: num_patches // 2] += codes[c]  # colour lives in the top half
    patch[num_patches // 2:] += codes[len(COLOURS) + s]
    return patch, patch.mean(axis=0)


def make_toy_feature_world(root: str, *, clip_checkpoint: str,
                           patch_dim: int = 48, global_dim: int = 32,
                           num_patches: int = 49, num_train: int = 64,
                           num_test: int = 8, seed: int = 0) -> Dict[str, str]:
    """Write a toy train/test split in the project's formats.

    Args:
        root (str): Output directory.
        clip_checkpoint (str): The open_clip checkpoint whose ``proj``
            (patch_dim x global_dim) maps patch means to global features.
        patch_dim, global_dim, num_patches (int): Feature layout.
        num_train, num_test (int): Numbers of captions / test images.
        seed (int): Seed of everything.

    Returns:
        dict: paths ``train_ann``, ``test_ann``, ``test_gt``, ``train_feats``,
        ``test_feats``, ``tokenizer``, ``concept_bank``.
    """
    rng = np.random.default_rng(seed)
    state = torch.load(clip_checkpoint, map_location='cpu', weights_only=True)
    proj = state['visual.proj'].numpy()  # (Dv, Dg)
    codes = rng.standard_normal((len(COLOURS) + len(SHAPES), patch_dim))
    paths = {k: osp.join(root, v) for k, v in dict(
        train_ann='annotations/train.json', test_ann='annotations/test.json',
        test_gt='annotations/test_gt.json', train_feats='features/train',
        test_feats='features/test', tokenizer='tokenizer.json',
        concept_bank='concepts.npz').items()}
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)

    def split(n: int, first_id: int):
        ids, caps, patches, globs = [], [], [], []
        for i in range(n):
            caption, label = _caption(rng)
            patch, glob = _features(codes, label, num_patches, rng)
            ids.append(str(first_id + i)), caps.append(caption)
            patches.append(patch), globs.append(glob @ proj)
        return ids, caps, np.stack(patches), np.stack(globs)

    ids, train_caps, patches, globs = split(num_train, TRAIN_ID_START)
    cos = rng.uniform(0.1, 0.5, size=num_train).astype(np.float32)
    write_feature_store(paths['train_feats'], ids, patches, globs, cos)
    _dump(paths['train_ann'], [dict(image_id=i, caption=c)
                               for i, c in zip(ids, train_caps)], 'train')
    ids, caps, patches, globs = split(num_test, 1)
    write_feature_store(paths['test_feats'], ids, patches, globs)
    _dump(paths['test_ann'], [dict(image_id=i, captions=[c])
                              for i, c in zip(ids, caps)], 'test')
    with open(paths['test_gt'], 'w') as f:
        json.dump(dict(
            images=[dict(id=int(i)) for i in ids],
            annotations=[dict(image_id=int(i), id=k, caption=c)
                         for k, (i, c) in enumerate(zip(ids, caps))]), f)
    save_tokenizer(build_word_tokenizer(count_words(train_caps), min_count=1),
                   paths['tokenizer'])
    words = list(COLOURS + SHAPES) + ['background', 'object', 'thing']
    bank = rng.standard_normal((len(words), global_dim))
    save_concept_bank(paths['concept_bank'], words,
                      bank / np.linalg.norm(bank, axis=1, keepdims=True))
    return paths


def _dump(path: str, data_list, split: str) -> None:
    with open(path, 'w') as f:
        json.dump(dict(metainfo=dict(dataset='toy', split=split),
                       data_list=data_list), f)


def toy_config(world: Dict[str, str], work_dir: str, *, max_epochs: int = 2,
               base: str = 'configs/pcm_coco.py'):
    """``base`` (a PCM-Net config) shrunk to toy size, pointed at ``world``.

    Args:
        world (dict): Paths from :func:`make_toy_feature_world` plus
            ``clip_head``.
        work_dir (str): Work directory of the run.
        max_epochs (int): Epochs (8 iterations each). Defaults to 2.
        base (str): Config path relative to the repository root.

    Returns:
        mmengine.Config: Ready for ``Runner.from_cfg`` or ``cfg.dump``.
    """
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, base))
    small = dict(embed_dim=64, num_layers=1, num_heads=2, ffn_dim=128)
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'model.tokenizer': world['tokenizer'],
        'model.mixup.patch_dim': 48, 'model.mixup.global_dim': 32,
        'model.mixup.embed_dim': 64,
        'model.mixup.concept_bank': world['concept_bank'],
        'model.mixup.clip_head': world['clip_head'],
        'model.mixup.top_k': 3, 'model.mixup.dropout': 0.1,
        'model.encoder': dict(cfg.model.encoder, **small),
        'model.decoder': dict(cfg.model.decoder, **small, max_len=6),
        'model.max_len': 6,
        'param_scheduler': [dict(type='NoamLR', model_dim=64, warmup=8,
                                 factor=2.0, by_epoch=False)],
        'train_cfg.max_epochs': max_epochs,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
    })
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=8, num_workers=0, persistent_workers=False)
        part = 'train' if split == 'train' else 'test'
        loader.dataset.update(ann_file=world[f'{part}_ann'],
                              feature_dir=world[f'{part}_feats'])
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key] = dict(type='COCOCaptionMetric', ann_file=world['test_gt'],
                        scorers=('bleu', 'cider'))
    return cfg
