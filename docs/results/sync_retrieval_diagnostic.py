"""How well the mini CLIP retrieves each synthetic pair's own partner, over
the 8,000 training pairs of world seed 0, clean vs defective images
(docs/benchmarks/sync.md). Reads the refiner's work folders:

    python projects/mini_world/tools/refine.py --root data/mini_world \
        --rates 0.3 0.6
    python docs/results/sync_retrieval_diagnostic.py \
        > docs/results/sync_retrieval_diagnostic.txt
"""
import glob
import json

import numpy as np

ROOT = 'data/mini_world'
ids = [e['image_id'] for e in json.load(open(
    f'{ROOT}/corpus/annotations/train.json'))['data_list']]
for rate in ('030', '060'):
    work = f'{ROOT}/refined/synth_d{rate}/train.json.work'
    defects = json.load(open(f'{ROOT}/images/synth_d{rate}/defects.json'))
    bad = np.array([defects[i] is not None for i in ids])
    back = np.load(f'{work}/columns-rank0of1.npz')['indices']  # (M, Kr)
    cand = np.concatenate([np.load(p)['cand'] for p in
                           sorted(glob.glob(f'{work}/chunk-*.npz'))])
    own = np.arange(len(ids))[:, None]  # caption i's own image is image i
    rows = dict(image_to_text_R2=(back == own).any(1),
                text_to_image_R1=cand[:, :1] == own[:, :1],
                text_to_image_R15=(cand == own).any(1))
    for name, hit in rows.items():
        hit = hit.reshape(-1)
        print(f'rate 0.{rate[1:]} {name}: clean {hit[~bad].mean():.3f} '
              f'defective {hit[bad].mean():.3f}')
