"""Registries used by pcm_plugin.

PCM-Net's components are registered straight into mmpretrain's registries,
the way OpenMMLab ``projects/`` plugins do it, so an mmpretrain-style config
(``default_scope='mmpretrain'``) reaches them by their bare names once
``custom_imports = dict(imports=['pcm_plugin'], allow_failed_imports=False)``
is set. Importing ``mmpretrain.registry`` is cheap: it does not import
mmpretrain's models.

A config that inherits ours (``_base_ = 'pcm_plugin::zoo/NAME.py'``) has its
dicts built in the scope ``pcm_plugin`` (mmengine names the scope after the
package). :data:`SCOPE_REGISTRIES` gives that scope one empty child of each
mmpretrain registry, so its names resolve to mmpretrain's, where ours are
(``import pcm_plugin`` fills them: the children's import location).
"""
import mmpretrain.registry
from mmengine.registry import Registry
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

SCOPE_REGISTRIES = {
    name: Registry(registry.name, parent=registry, scope='pcm_plugin',
                   locations=['pcm_plugin'])
    for name, registry in vars(mmpretrain.registry).items()
    if isinstance(registry, Registry) and registry.scope == 'mmpretrain'
}

__all__ = [
    'DATASETS', 'HOOKS', 'LOOPS', 'METRICS', 'MODEL_WRAPPERS', 'MODELS',
    'OPTIM_WRAPPERS', 'PARAM_SCHEDULERS', 'TRANSFORMS', 'SCOPE_REGISTRIES'
]
