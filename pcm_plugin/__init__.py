"""pcm_plugin: PCM-Net (ECCV 2024) as OpenMMLab captioning components.

``import pcm_plugin`` (or ``custom_imports = dict(imports=['pcm_plugin'],
allow_failed_imports=False)`` in a config) registers the components into
mmpretrain's registries, makes mmengine's local checkpoint loading work on
torch >= 2.6 (safely), and adds the PCM-Net names to mmpretrain's model zoo.
That is all it does (as mmpretrain's ``register_all_modules``): it sets no
environment variable, warning filter, logging handler or thread count;
the tools' start-up (``tools/_cli.py``) owns those.
"""
from .engine import register_checkpoint_loader

register_checkpoint_loader()

from . import datasets, engine, evaluation, models, visualization  # noqa: E402,F401
from .apis.zoo import register_model_zoo  # noqa: E402
from .version import __version__  # noqa: E402,F401

register_model_zoo()
