"""The CLIP image tower a one-file release carries (``--with-clip``).

``tools/publish_model.py CONFIG CKPT OUT.safetensors --with-clip`` stores
the image tower's tensors under :data:`CLIP_TOWER_PREFIX` and, under
:data:`CLIP_KEY` in the file's metadata, what rebuilds it: the open_clip
model name, its model config and its preprocessing. This module reads it
back, with open_clip and the file alone, for the model's image encoder
(``OpenCLIPImageEncoder(release=...)``); the release writer is
``pcm_plugin.apis.release``. A release whose model re-ranks its beams
with CLIP also carries that CLIP's text tower, rebuilt by
``CLIPReranker`` with :func:`untrained_clip` from the architecture its
config records.
"""
import json
import logging
import os.path as osp
import tempfile
from typing import Dict, Optional, Tuple

from safetensors import safe_open

from pcm_plugin.clip.clip_features import (
    check_vit_layout,
    register_model_config,
)

CLIP_KEY = 'pcm_plugin.clip'  # metadata: how to rebuild the tower (JSON)
CLIP_TOWER_PREFIX = 'clip_tower.'  # the tower's tensors


def safetensors_metadata(path: str) -> Dict[str, str]:
    """The string metadata of a ``.safetensors`` file (``{}`` if none)."""
    with safe_open(path, framework='pt') as f:
        return f.metadata() or {}


def load_release_clip(path: str):
    """The CLIP a one-file release carries, in eval mode on the CPU.

    The open_clip model is built from the release's model config with the
    release's image tower (its text tower is not in the release and stays
    untrained: captioning uses the image tower only); its
    ``visual.preprocess_cfg`` is the release's preprocessing.

    Args:
        path (str): The ``.safetensors`` release.

    Raises:
        ValueError: the release carries no CLIP, or its CLIP metadata is
            not an open_clip ViT's.
    """
    meta = safetensors_metadata(path)
    if CLIP_KEY not in meta:
        raise ValueError(
            f'{path} carries no CLIP (it was published without '
            '--with-clip): pass the CLIP that extracted its training '
            'features with --clip-checkpoint (or clip_checkpoint=)')
    name, config, preprocess = _clip_metadata(meta[CLIP_KEY], path)
    with safe_open(path, framework='pt', device='cpu') as f:
        tower = {k[len(CLIP_TOWER_PREFIX):]: f.get_tensor(k)
                 for k in f.keys() if k.startswith(CLIP_TOWER_PREFIX)}
    model = untrained_clip(name, config, preprocess)
    model.visual.load_state_dict(tower, strict=True)
    check_vit_layout(model, name)
    return model.eval()


def _clip_metadata(text: str, source: str) -> Tuple[str, dict, dict]:
    """``(name, open_clip model config, preprocessing)`` of a release's
    CLIP, checked to describe an open_clip model built from its config
    alone (no timm or Hugging Face tower fetched by name)."""
    try:
        meta = json.loads(text)
        name, config = meta['name'], meta['model_config']
        preprocess = meta['preprocess']
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f'{source}: its CLIP metadata is damaged '
                         f'({type(err).__name__}: {err})') from None
    if not isinstance(preprocess, dict):
        raise ValueError(f'{source}: its CLIP metadata does not describe '
                         'an open_clip model built from its own config')
    check_own_clip_config(name, config, source)
    for key in ('size', 'mean', 'std'):
        if isinstance(preprocess.get(key), list):  # JSON has no tuples
            preprocess[key] = tuple(preprocess[key])
    return name, config, preprocess


def check_own_clip_config(name, config, source: str) -> None:
    """Refuse what is not an open_clip model built from its own config
    alone: ``name`` must be a plain file stem (open_clip knows a config by
    its file's stem) and ``config`` a dict naming no timm or Hugging Face
    tower (which open_clip would fetch by name).

    Args:
        name: The open_clip model name a release records.
        config: The model config it records.
        source (str): The release, for messages.

    Raises:
        ValueError: naming ``source``.
    """
    named_towers = {'timm_model_name', 'hf_model_name'}
    if not (isinstance(name, str) and name and osp.basename(name) == name
            and isinstance(config, dict)
            and not any(named_towers & set(config.get(part) or {})
                        for part in ('vision_cfg', 'text_cfg'))):
        raise ValueError(f'{source}: its CLIP metadata does not describe '
                         'an open_clip model built from its own config')


def untrained_clip(name: str, config: dict,
                   preprocess: Optional[dict] = None):
    """The open_clip model ``name`` built from ``config`` (a model config
    checked by :func:`check_own_clip_config`) without weights: a
    release's tensors are loaded into it next.

    Args:
        name (str): The open_clip model name.
        config (dict): Its model config.
        preprocess (dict, optional): Preprocessing to set on its image
            tower (``visual.preprocess_cfg``). Defaults to open_clip's.
    """
    with tempfile.TemporaryDirectory() as folder:
        _register_clip_config(name, config, folder)
        return _untrained_clip(name, preprocess)


def _register_clip_config(name: str, config: dict, folder: str) -> None:
    """Make open_clip build ``name`` from ``config`` (it knows a config by
    its file's stem); a model it knows with this config is left alone."""
    import open_clip  # deferred: open_clip loads only where CLIP runs
    if name in open_clip.list_models() and \
            open_clip.get_model_config(name) == config:
        return
    path = osp.join(folder, f'{name}.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(config, f)
    register_model_config(path)


def _untrained_clip(name: str, preprocess: Optional[dict]):
    """``open_clip.create_model`` without weights, its warning that the
    model is untrained silenced (the release's tower is loaded next)."""
    import open_clip  # deferred: open_clip loads only where CLIP runs
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return open_clip.create_model(name, pretrained=None,
                                      force_preprocess_cfg=preprocess)
    finally:
        logging.disable(previous)
