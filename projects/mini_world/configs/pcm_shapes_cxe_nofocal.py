# Mini-world ablation, opt-in: CLIP-weighted cross-entropy without the
# official code's batch focal factor (paper Eq. 11 alone), no mix-up.
_base_ = ['./pcm_shapes.py']

model = dict(mixup=dict(mode='none'), loss=dict(focal='none'))
