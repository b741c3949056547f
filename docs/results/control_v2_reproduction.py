"""Control for the SynC comparison (docs/benchmarks/sync.md): retrain the
v2 cell Base / rate 0.3 / seed 0 of world seed 0 with today's code and
compare its weights with the sweep's checkpoint, trained on Dec 1 with the
code of that day. Equal bit for bit means rows trained today (the refined
cells) and the v2 rows come from the same training code.

    OMP_NUM_THREADS=1 python docs/results/control_v2_reproduction.py \\
        > docs/results/control_v2_reproduction.txt
"""
import torch
from mmengine.runner import Runner

from projects.mini_world.pcm_mini_world.ablation import variant_config
from projects.mini_world.pcm_mini_world.prepare import load_world

OLD = 'work_dirs/ablation/localized-seed0/base_synth_d030_s0/epoch_6.pth'
NEW = '/tmp/pcm_control/localized-seed0/base_synth_d030_s0/epoch_6.pth'

torch.set_num_threads(1)
cfg = variant_config('configs', load_world('data/mini_world'), 'base',
                     rate=0.3, seed=0, work_root='/tmp/pcm_control')
Runner.from_cfg(cfg).train()
old, new = (torch.load(p, map_location='cpu', weights_only=False)
            ['state_dict'] for p in (OLD, NEW))
same = sum(torch.equal(old[k], new[k]) for k in old)
print(f'control: {same} of {len(old)} tensors bitwise equal; max diff',
      max((old[k].float() - new[k].float()).abs().max().item()
          for k in old))
