"""PCM-Net's names in mmpretrain's model zoo.

``import pcm_plugin`` registers ``configs/zoo/model-index.yml`` with
mmpretrain's ``ModelHub``, so that ``mmpretrain.list_models('pcm*')`` lists
the four PCM-Net models and ``mmpretrain.get_model('pcm-net_vit-b32_coco',
pretrained='RELEASE.safetensors')`` builds one from a one-file release
(its tokenizer, concept bank and CLIP head come with the weights).
"""
import os.path as osp
from typing import Optional

ZOO_INDEX = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'configs', 'zoo', 'model-index.yml')


def register_model_zoo(index: str = ZOO_INDEX) -> Optional[str]:
    """Register the zoo once; returns the index used, or None when the
    configs are not beside the package (a wheel install without the
    repository: clone it for the zoo configs)."""
    from mmpretrain.apis.model import ModelHub
    if not osp.isfile(index):
        return None
    if not ModelHub.has('pcm-net_vit-b32_coco'):
        ModelHub.register_model_index(index)
    return index
