# The prefix captioner of configs/pcm_viecap_coco.py without PCM and CXE:
# ViECap on synthetic-image features (paper Table 4's baseline row). Needs
# the same local GPT-2 (data/gpt2).
#
# threshold=1.0: no concept's retrieval probability exceeds it, so no patch
# is mixed (training) and no textual token is visible (test): the visual
# tokens are exactly the Base model's, while the top-K concepts are still
# retrieved for ViECap's entity hard prompt. (mode='none' would retrieve
# nothing, and the prompt needs the concepts.)
_base_ = ['./pcm_viecap_coco.py']

model = dict(
    clip_weighted=False, mixup=dict(threshold=1.0), loss=dict(focal='none'))
