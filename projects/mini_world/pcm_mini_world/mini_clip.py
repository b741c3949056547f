"""A small CLIP for the mini world: an ordinary open_clip model.

The model is an open_clip ``CLIP`` built from a custom config (64x64
images, 8x8 patches -> an 8x8 grid of 64 tokens like the pooled ViT-L/14
grid, width 64, 4 layers; a 2-layer text tower; 64-d joint space), trained
by :mod:`.mini_clip_train` and saved as an fp16 state dict next to its
model-config JSON, so::

    open_clip.add_model_config('pcm-mini-clip.json')
    model = open_clip.create_model('pcm-mini-clip',
                                   pretrained='pcm-mini-clip.pt')

loads it, and feature extraction, the frozen PCM head, concept banks and
CLIP scores run exactly the code they run with real CLIP.

Two CLIPs are committed (:data:`CLIP_KINDS`):

* ``'weak'`` (``projects/mini_world/resources/mini_clip``): trained
  through its class token only; its patch tokens are weakly localized (a
  shape or colour concept's selected patch is on a matching object ~17 %
  of the time);
* ``'localized'`` (``projects/mini_world/resources/mini_clip_localized``):
  the weak one continued with a dense patch-concept objective
  (:mod:`.mini_clip_dense`), so its projected patch tokens name the object
  under them, as PCM-Net assumes of real CLIP.

Both are reproduced by
``python projects/mini_world/tools/train_mini_clip.py`` (see its docstring
for the two commands).
"""
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from pcm_plugin.clip.clip_features import register_model_config
from pcm_plugin.utils.fileio import atomic_path

from .names import CLIP_KINDS, DEFAULT_CLIP_KIND  # noqa: F401

MINI_CLIP_NAME = 'pcm-mini-clip'
MINI_CLIP_CONFIG: Dict = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=64, layers=4, width=64, head_width=32,
                    patch_size=8),
    text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=2,
                  layers=2),
)
# Concept-bank templates (prepare.py) and concept checks: phrasings the
# mini CLIP saw in its partial captions ("a photo of a star").
CONCEPT_TEMPLATES = ('a photo of a {}.', 'a {}.', 'a photo of the {}.')


# projects/mini_world/: the committed CLIPs live in its resources/.
PROJECT_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def committed_dir(kind: str = 'weak') -> str:
    """Directory of a committed mini CLIP (a key of :data:`CLIP_KINDS`)."""
    if kind not in CLIP_KINDS:
        raise ValueError(f'unknown mini CLIP kind {kind!r}; choose one of '
                         f'{sorted(CLIP_KINDS)}')
    return osp.join(PROJECT_ROOT, 'resources', CLIP_KINDS[kind])


def committed_paths(kind: str = 'weak') -> Tuple[str, str]:
    """``(config_json, checkpoint)`` of a committed mini CLIP."""
    root = committed_dir(kind)
    return (osp.join(root, f'{MINI_CLIP_NAME}.json'),
            osp.join(root, f'{MINI_CLIP_NAME}.pt'))


def load_mini_clip(config_path: Optional[str] = None,
                   checkpoint: Optional[str] = None):
    """Load a mini CLIP through open_clip (eval mode, CPU).

    Args:
        config_path (str, optional): Model-config JSON; the committed one
            when None.
        checkpoint (str, optional): Weights; the committed ones when None.

    Returns:
        tuple: ``(model, preprocess, tokenizer, name)``.
    """
    import open_clip
    default_cfg, default_ckpt = committed_paths()
    config_path = config_path or default_cfg
    checkpoint = checkpoint or default_ckpt
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'mini CLIP checkpoint {checkpoint} not found; train one with '
            '`python projects/mini_world/tools/train_mini_clip.py`')
    name = register_model_config(config_path)
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=checkpoint)
    return model.eval(), preprocess, open_clip.get_tokenizer(name), name


def round_to_fp16_(model) -> None:
    """Round every parameter to fp16 precision in place.

    The checkpoint is stored in fp16 to stay small; rounding first makes
    the saved model *exactly* the evaluated one.
    """
    import torch
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def save_mini_clip(model, out_dir: str, name: str = MINI_CLIP_NAME,
                   config: Optional[Dict] = None) -> Tuple[str, str]:
    """Write ``<name>.json`` (model config) and ``<name>.pt`` (fp16 state).

    Returns:
        tuple[str, str]: The config and checkpoint paths.
    """
    import torch
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = osp.join(out_dir, f'{name}.json')
    ckpt_path = osp.join(out_dir, f'{name}.pt')
    with open(cfg_path, 'w', encoding='utf-8') as f:
        json.dump(config or MINI_CLIP_CONFIG, f, indent=1)
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    with atomic_path(ckpt_path) as tmp:
        torch.save(state, tmp)
    return cfg_path, ckpt_path


def images_to_tensor(images: Sequence[np.ndarray]):
    """uint8 (H, W, 3) images -> CLIP-normalised (B, 3, H, W) float tensor.

    Equal to open_clip's eval preprocess for images already at the model's
    resolution (its resize and centre crop are then the identity).
    """
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    batch = torch.from_numpy(np.stack(images)).float() / 255.0  # (B, H, W, 3)
    batch = batch.permute(0, 3, 1, 2)  # (B, 3, H, W)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def encode_texts(model, tokenizer, texts: Sequence[str],
                 batch_size: int = 256):
    """Unit CLIP text embeddings (N, D)."""
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            emb = model.encode_text(tokenizer(list(texts[i:i + batch_size])))
            out.append(emb / emb.norm(dim=-1, keepdim=True))
    return torch.cat(out)


def encode_images(model, images: Sequence[np.ndarray],
                  batch_size: int = 256):
    """Unit CLIP image embeddings (N, D)."""
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            batch = images_to_tensor(images[i:i + batch_size])
            emb = model.encode_image(batch)  # (b, D)
            out.append(emb / emb.norm(dim=-1, keepdim=True))
    return torch.cat(out)


def concept_embeddings(model, tokenizer, words: Sequence[str],
                       templates: Sequence[str] = CONCEPT_TEMPLATES):
    """Prompt-ensemble unit embeddings (C, D) of concept words."""
    total = 0
    for template in templates:
        total = total + encode_texts(model, tokenizer,
                                     [template.format(w) for w in words])
    mean = total / len(templates)
    return mean / mean.norm(dim=-1, keepdim=True)


def projected_patches(model, tokens):
    """(B, 1 + N, W) tokens entering ``ln_post`` -> (B, N, Dg) patches in
    CLIP space: exactly what PCM's frozen head computes."""
    return model.visual.ln_post(tokens[:, 1:]) @ model.visual.proj
