# pcm_viecap_shapes_base.py without ViECap's hard prompt: the Base of
# pcm_viecap_shapes_noprompt.py.
_base_ = ['./pcm_viecap_shapes_base.py']

model = dict(entity_prompt=None)
