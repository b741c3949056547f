"""The frozen CLIP image head (``ln_post`` + ``proj``) used by PCM.

PCM projects every patch token into CLIP's joint space with CLIP's own head
(the DenseCLIP trick, docs/method.md §3.2). The weights come from an open_clip
checkpoint (a full model state dict, optionally under ``state_dict`` and with
a ``module.`` prefix) or from a small file holding only the three tensors.
"""
import os.path as osp
from typing import Dict

import torch
from safetensors.torch import load_file
from torch import nn

HEAD_KEYS = ('visual.ln_post.weight', 'visual.ln_post.bias', 'visual.proj')


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith('.safetensors'):
        return load_file(path)
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and 'state_dict' in state:
        state = state['state_dict']
    if not isinstance(state, dict):
        raise ValueError(f'{path}: expected a state dict, got '
                         f'{type(state).__name__}')
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state.items()}


def load_clip_head_state(path: str) -> Dict[str, torch.Tensor]:
    """Read ``ln_post`` and ``proj`` from an open_clip checkpoint or head file.

    Args:
        path (str): ``.pt``/``.pth``/``.bin``/``.safetensors`` file.

    Returns:
        dict: ``ln_weight`` (Dv), ``ln_bias`` (Dv), ``proj`` (Dv, Dg).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'CLIP head weights {path} not found. Point `clip_head` to the '
            'open_clip checkpoint used for feature extraction (e.g. '
            'data/clip/ViT-B-32.pt), or to a file holding just its '
            '`visual.ln_post.weight`, `visual.ln_post.bias` and '
            '`visual.proj` tensors')
    state = _read_state_dict(path)
    missing = [k for k in HEAD_KEYS if k not in state]
    if missing:
        raise KeyError(
            f'{path} has no {missing}: it is not an open_clip ViT '
            'checkpoint (only ViT models have ln_post/proj)')
    ln_weight, ln_bias, proj = (state[k].float() for k in HEAD_KEYS)
    return dict(ln_weight=ln_weight, ln_bias=ln_bias, proj=proj)


class FrozenCLIPHead(nn.Module):
    """``LayerNorm(Dv)`` then ``@ proj (Dv, Dg)``, never trained.

    The weights are ordinary parameters with ``requires_grad=False`` so they
    sit in the state dict (as in the official code) but not in the
    optimiser's updates.

    Args:
        patch_dim (int): Dv, CLIP's vision width.
        global_dim (int): Dg, CLIP's joint embedding size.
        eps (float): LayerNorm epsilon (open_clip uses 1e-5).
    """

    def __init__(self, *, patch_dim: int, global_dim: int, eps: float = 1e-5):
        super().__init__()
        self.ln_post = nn.LayerNorm(patch_dim, eps=eps)
        self.proj = nn.Parameter(torch.empty(patch_dim, global_dim))
        nn.init.normal_(self.proj, std=patch_dim ** -0.5)
        self.requires_grad_(False)

    @torch.no_grad()
    def load_from_file(self, path: str) -> None:
        """Copy ``ln_post``/``proj`` from ``path``, checking the shapes."""
        head = load_clip_head_state(path)
        expected = tuple(self.proj.shape)
        if tuple(head['proj'].shape) != expected:
            raise ValueError(
                f'{path}: CLIP proj has shape {tuple(head["proj"].shape)} but '
                f'the config expects (patch_dim, global_dim) = {expected}; '
                'use the checkpoint of the CLIP that extracted the features')
        self.ln_post.weight.copy_(head['ln_weight'])
        self.ln_post.bias.copy_(head['ln_bias'])
        self.proj.copy_(head['proj'])

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, Dv) raw patch tokens -> (B, N, Dg) joint-space tokens."""
        return self.ln_post(patches) @ self.proj
