# Mini-world prefix captioner without PCM and CXE (ViECap on synthetic
# features): see configs/pcm_viecap_coco_base.py for threshold=1.0 (no
# patch mixed, concepts still retrieved for the hard prompt).
_base_ = ['./pcm_viecap_shapes.py']

model = dict(
    clip_weighted=False, mixup=dict(threshold=1.0), loss=dict(focal='none'))
