# pcm_viecap_shapes.py without ViECap's hard prompt (no retrieved concepts
# in the language model's input): a diagnostic of why PCM + CXE gains
# less in the prefix host, where Base already reads the concepts there.
_base_ = ['./pcm_viecap_shapes.py']

model = dict(entity_prompt=None)
