# Mini-world ablation, opt-in (issue 26 §3; ours, beyond the paper): full
# PCM-Net whose mix-up never writes a background word. The world's stuff
# list is its five backgrounds (pcm_mini_world/scenes.py BACKGROUNDS; the
# lab's tests check the two agree): still retrieved into the K slots, never
# selected and never mixed into a textual patch, so the official top-M rule
# ranks the shape and colour words alone. Everything else is pcm_shapes.py's.
_base_ = ['./pcm_shapes.py']

model = dict(mixup=dict(excluded_words=['snow', 'sand', 'sky', 'night',
                                        'grass']))
