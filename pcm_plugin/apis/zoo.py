"""PCM-Net's names in mmpretrain's model zoo and its configs in mmengine's.

``import pcm_plugin`` registers the model index (``model-index.yml``, which
imports ``configs/zoo/model-index.yml``) with mmpretrain's ``ModelHub``, so
that ``mmpretrain.list_models('pcm*')`` lists the four PCM-Net models and
``mmpretrain.get_model('pcm-net_vit-b32_coco',
pretrained='RELEASE.safetensors')`` builds one from a one-file release (its
tokenizer, concept bank and CLIP head come with the weights).

It also lets a config inherit ours, ``_base_ = 'pcm_plugin::zoo/NAME.py'``
or ``'pcm_plugin::_base_/...'``, in a process that imported pcm_plugin
before reading the config (the tools do). mmengine reads these from
``pcm_plugin/.mim/configs`` of an installed wheel (an editable install has
none: inherit by path there) and only from a folder below ``configs/``.
"""
import os.path as osp
from typing import Optional

from mmengine.config.utils import MODULE2PACKAGE
from mmpretrain.apis.model import ModelHub

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
# An installed wheel carries the index and configs in pcm_plugin/.mim
# (setup.py copies them there, as mmpretrain ships its own); a clone or an
# editable install reads them from the repository beside the package.
ZOO_ROOTS = (osp.join(PACKAGE_DIR, '.mim'), osp.dirname(PACKAGE_DIR))


def find_model_index() -> Optional[str]:
    """The first ``model-index.yml`` of :data:`ZOO_ROOTS`.

    Returns:
        Optional[str]: Its path, or None where neither the package nor a
        repository around it has one.
    """
    for root in ZOO_ROOTS:
        index = osp.join(root, 'model-index.yml')
        if osp.isfile(index):
            return index
    return None


def register_model_zoo(index: Optional[str] = None) -> Optional[str]:
    """Register the zoo with mmpretrain and the package with mmengine, once.

    Args:
        index (str, optional): A ``model-index.yml``; default: the one
            :func:`find_model_index` finds.

    Returns:
        Optional[str]: The index registered, or None when there is none.
    """
    # mmengine resolves `_base_ = 'PACKAGE::...'` only for the packages in
    # this table; it has no other way to add one.
    MODULE2PACKAGE.setdefault('pcm_plugin', 'pcm_plugin')
    index = index or find_model_index()
    if index is None:
        return None
    if not ModelHub.has('pcm-net_vit-b32_coco'):
        ModelHub.register_model_index(index)
    return index
