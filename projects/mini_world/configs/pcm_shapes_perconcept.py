# Mini-world ablation, opt-in (issue 26 §3; ours, beyond the paper): full
# PCM-Net whose mix-up lets each retrieved concept write its own vector into
# one patch of its own, at most one concept per patch, instead of the
# official code's top-M (patch, concept) pairs, in training (replaced) and
# at test (appended) alike. Everything else is pcm_shapes.py's.
_base_ = ['./pcm_shapes.py']

model = dict(mixup=dict(selection='per_concept'))
