"""The recount behind docs/results/NOTES.md (80.6 % / 69.3 %).

Run from the repository root once the ablation cell
``localized-seed0/full_synth_d030_s0`` is trained::

    .venv/bin/python docs/results/mixup_pairs_recount.py

Output of the committed run: ``mixup_pairs_recount.txt`` beside this file.
"""
import collections

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import pcm_plugin  # noqa: F401
from pcm_plugin.datasets.feature_store import FeatureStore
from pcm_plugin.registry import MODELS
from pcm_plugin.visualization import mixup_pairs

CELL = 'work_dirs/ablation/localized-seed0/full_synth_d030_s0'
BACKGROUNDS = {'snow', 'sand', 'sky', 'night', 'grass'}

cfg = Config.fromfile(CELL + '/20261201_231917/vis_data/config.py')
model = MODELS.build(cfg.model)
load_checkpoint(model, CELL + '/epoch_6.pth', map_location='cpu',
                logger='silent')
model.eval()
for split in ('test', 'synth_d030'):
    store = FeatureStore(f'data/mini_world/features/{split}')
    items = [store.get(i) for i in store.ids[:500]]
    patch = torch.tensor(np.stack([it['patch'] for it in items])).float()
    glob = torch.tensor(np.stack([it['global_feat'] for it in items])).float()
    found = mixup_pairs(model.mixup, patch, glob)
    mixed = collections.Counter(f['concepts'][slot] for f in found
                                for _, slot in f['pairs'])
    retrieved = collections.Counter(w for f in found for w in f['concepts'])
    total = sum(mixed.values())
    print(split, 'images', len(items), 'pairs', total,
          'background share of mixed pairs %.3f'
          % (sum(v for k, v in mixed.items() if k in BACKGROUNDS) / total),
          'background share of retrieved concepts %.3f'
          % (sum(v for k, v in retrieved.items() if k in BACKGROUNDS)
             / sum(retrieved.values())), mixed.most_common(8))
