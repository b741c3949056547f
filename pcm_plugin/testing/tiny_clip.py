"""Tiny open_clip models built from custom configs, saved as checkpoints.

No pretrained CLIP weights exist offline, so tests build a small random ViT
CLIP with open_clip's own code and save it as an ordinary open_clip
checkpoint: everything downstream (feature extraction, the frozen head in
PCMMixup, concept banks, CLIP scores) then runs exactly the code it runs with
real CLIP.
"""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import torch

from pcm_plugin.clip.clip_features import register_model_config

# Two layouts mirroring the real backbones' token grids at toy width:
# 'b32' -> 7x7 = 49 patches like ViT-B/32, 'l14' -> 16x16 = 256 patches that
# the extractor pools 2x2 to 8x8 = 64 like ViT-L/14.
TINY_CLIP_CONFIGS: Dict[str, Dict] = {
    'pcm-tiny-vit-b32': dict(
        embed_dim=32,
        vision_cfg=dict(image_size=224, layers=2, width=48, head_width=24,
                        patch_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2,
                      layers=2)),
    # The embedding width of ViT-B/32 (512) with toy towers: what the SynC
    # neighbour search costs at scale, without the towers' cost.
    'pcm-tiny-embed512': dict(
        embed_dim=512,
        vision_cfg=dict(image_size=32, layers=1, width=32, head_width=16,
                        patch_size=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2,
                      layers=1)),
    'pcm-tiny-vit-l14': dict(
        embed_dim=40,
        vision_cfg=dict(image_size=224, layers=2, width=64, head_width=32,
                        patch_size=14),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2,
                      layers=2)),
}


def write_model_config(name: str, config: Dict, config_dir: str) -> str:
    """Write ``<config_dir>/<name>.json`` and register it with open_clip."""
    os.makedirs(config_dir, exist_ok=True)
    path = osp.join(config_dir, f'{name}.json')
    with open(path, 'w') as f:
        json.dump(config, f)
    return register_model_config(path)


def build_tiny_open_clip(out_dir: str, name: str = 'pcm-tiny-vit-b32',
                         seed: int = 0) -> Tuple[str, str]:
    """Create, register and save a tiny random open_clip model.

    Args:
        out_dir (str): Directory for ``<name>.json`` and ``<name>.pt``.
        name (str): A key of :data:`TINY_CLIP_CONFIGS`.
        seed (int): Initialisation seed.

    Returns:
        tuple[str, str]: The model name and the checkpoint path (a state dict
        that ``open_clip.create_model(name, pretrained=path)`` loads).
    """
    import open_clip  # deferred: loads only where a tiny CLIP is written
    write_model_config(name, TINY_CLIP_CONFIGS[name], out_dir)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    ckpt = osp.join(out_dir, f'{name}.pt')
    torch.save(model.state_dict(), ckpt)
    return name, ckpt
