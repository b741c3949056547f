"""Registries used by pcm_plugin.

PCM-Net's components are registered straight into mmpretrain's registries,
the way OpenMMLab ``projects/`` plugins do it, so an mmpretrain-style config
(``default_scope='mmpretrain'``) reaches them by their bare names once
``custom_imports = dict(imports=['pcm_plugin'], allow_failed_imports=False)``
is set. Importing ``mmpretrain.registry`` is cheap: it does not import
mmpretrain's models.
"""
from mmpretrain.registry import (
                                 DATASETS,
                                 HOOKS,
                                 LOOPS,
                                 METRICS,
                                 MODEL_WRAPPERS,
                                 MODELS,
                                 OPTIM_WRAPPERS,
                                 PARAM_SCHEDULERS,
                                 TRANSFORMS,
)

__all__ = [
    'DATASETS', 'HOOKS', 'LOOPS', 'METRICS', 'MODEL_WRAPPERS', 'MODELS',
    'OPTIM_WRAPPERS', 'PARAM_SCHEDULERS', 'TRANSFORMS'
]
