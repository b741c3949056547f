# Mini-world ablation "+PCM": patch-wise cross-modal mix-up, plain
# label-smoothed cross-entropy.
_base_ = ['./pcm_shapes.py']

model = dict(clip_weighted=False, loss=dict(focal='none'))
