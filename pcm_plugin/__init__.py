"""pcm_plugin: PCM-Net (ECCV 2024) as OpenMMLab captioning components.

``import pcm_plugin`` (or ``custom_imports = dict(imports=['pcm_plugin'],
allow_failed_imports=False)`` in a config) registers the components into
mmpretrain's registries and makes mmengine's local checkpoint loading work on
torch >= 2.6.
"""
from .engine import register_checkpoint_loader

register_checkpoint_loader()

from . import datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__version__ = '0.1.0'
