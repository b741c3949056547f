# Mini-world ablation, opt-in: full PCM-Net without the official code's
# batch focal factor in the CLIP-weighted loss (paper Eq. 11 alone).
_base_ = ['./pcm_shapes.py']

model = dict(loss=dict(focal='none'))
