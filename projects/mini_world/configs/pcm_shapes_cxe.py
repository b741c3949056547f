# Mini-world ablation "+CXE": CLIP-weighted cross-entropy as the official
# code implements it (batch focal factor on), no mix-up.
_base_ = ['./pcm_shapes.py']

model = dict(mixup=dict(mode='none'))
