"""A dense, patch-level image-text objective for the mini CLIP.

PCM-Net assumes CLIP's *patch* tokens, projected by CLIP's own head
(``ln_post`` + ``proj``), are text-aligned where the concept is: the
DenseCLIP/MaskCLIP property of web-scale CLIPs. A tiny CLIP trained only
through its class token does not have it (in open_clip's ViT the last
layer's patch outputs never reach the loss). This objective gives it that
property with the renderer's exact object masks: each patch's projected
token is classified against the text-tower embeddings of the world's
concept words (the same prompt ensemble the concept bank uses):

* a patch an object covers (>= ``min_cover``) must name the object's shape
  among {shapes, backgrounds} and its colour among {colours, backgrounds};
* a patch no object touches (< ``max_background_cover``) must name the
  scene's background among all words;
* patches in between (object edges) are left out.

The word groups keep the two object terms from fighting (a patch is both
"red" and "star") while every object word competes with the background
words, so background patches and object patches separate.

Shape letters: ``B`` images, ``N`` patches, ``C`` concept words,
``Dg`` joint-space width.
"""
from typing import Sequence, Tuple

import numpy as np

from .localisation import object_coverage
from .scenes import BACKGROUNDS, COLOURS, SHAPES, Scene

IGNORE = -100
# Concept words in bank order (world_steps.concept_words: shapes, colours,
# backgrounds) and the index ranges of the three groups.
WORDS: Tuple[str, ...] = tuple(SHAPES) + tuple(COLOURS) + tuple(BACKGROUNDS)
_S, _C = len(SHAPES), len(COLOURS)
SHAPE_IDX = list(range(0, _S))
COLOUR_IDX = list(range(_S, _S + _C))
BACKGROUND_IDX = list(range(_S + _C, len(WORDS)))


def patch_targets(scenes: Sequence[Scene], grid: int, *,
                  min_cover: float = 0.25,
                  max_background_cover: float = 0.02) -> np.ndarray:
    """Per-patch word targets of a batch of scenes.

    Args:
        scenes (list[Scene]): B scenes.
        grid (int): Patch grid side G (N = G*G).
        min_cover (float): Object cover that makes a patch an object patch
            (the object covering it most).
        max_background_cover (float): Largest total object cover of a
            background patch.

    Returns:
        np.ndarray: (B, N, 3) int64 indices into :data:`WORDS` of the
        (shape, colour, background) targets; unused entries are
        :data:`IGNORE` (object patches have no background target,
        background patches no shape or colour, edge patches none).
    """
    out = np.full((len(scenes), grid * grid, 3), IGNORE, np.int64)
    for b, scene in enumerate(scenes):
        cover = object_coverage(scene, grid)  # (O, N)
        if len(cover):
            best = cover.argmax(0)  # (N,)
            on = cover.max(0) >= min_cover  # (N,)
            total = cover.sum(0)  # (N,)
        else:
            best = np.zeros(grid * grid, np.int64)
            on = np.zeros(grid * grid, bool)
            total = np.zeros(grid * grid)
        for n in np.flatnonzero(on):
            obj = scene.objects[best[n]]
            out[b, n, 0] = WORDS.index(obj.shape)
            out[b, n, 1] = WORDS.index(obj.colour)
        background = total < max_background_cover
        out[b, background, 2] = WORDS.index(scene.background)
    return out


def scene_word_sets(scenes: Sequence[Scene]) -> np.ndarray:
    """(B, C) bool: which words of :data:`WORDS` each scene contains."""
    out = np.zeros((len(scenes), len(WORDS)), bool)
    for b, scene in enumerate(scenes):
        for obj in scene.objects:
            out[b, WORDS.index(obj.shape)] = True
            out[b, WORDS.index(obj.colour)] = True
        out[b, WORDS.index(scene.background)] = True
    return out


def image_concept_loss(image_embeds, word_embeds, present, *,
                       scale: float = 10.0):
    """Multi-positive cross-entropy of whole images against concept words.

    Keeps the *global* embedding's concept retrieval (PCM-Net's first step)
    sharp while :func:`dense_concept_loss` moves the word embeddings toward
    the patch tokens: within each group (shapes, colours, backgrounds) the
    image must put its probability mass on the words the scene contains,
    ``-log sum_{w present} softmax_group(scale * cos)_w``.

    Args:
        image_embeds (Tensor): (B, Dg) image embeddings.
        word_embeds (Tensor): (C, Dg) in :data:`WORDS` order.
        present (Tensor): (B, C) bool from :func:`scene_word_sets`.
        scale (float): Logit scale.

    Returns:
        Tensor: scalar, mean over images and the three groups.
    """
    import torch
    from torch.nn import functional as F
    logits = scale * F.normalize(image_embeds, dim=-1) @ F.normalize(
        word_embeds, dim=-1).t()  # (B, C)
    terms = []
    for group in (SHAPE_IDX, COLOUR_IDX, BACKGROUND_IDX):
        g = logits[:, group]  # (B, |group|)
        pos = g.masked_fill(~present[:, group], float('-inf'))
        terms.append((g.logsumexp(-1) - pos.logsumexp(-1)).mean())
    return torch.stack(terms).mean()


def dense_concept_loss(patch_proj, word_embeds, targets, *,
                       scale: float = 10.0):
    """Cross-entropy of patches against concept words, by word group.

    Args:
        patch_proj (Tensor): (B, N, Dg) projected patch tokens.
        word_embeds (Tensor): (C, Dg) word embeddings in :data:`WORDS`
            order (normalised here).
        targets (Tensor): (B, N, 3) from :func:`patch_targets`.
        scale (float): Logit scale (inverse temperature) of the cosines.

    Returns:
        Tensor: scalar, the mean over the three terms of each term's mean
        over its non-ignored patches (a term with none contributes 0).
    """
    import torch
    from torch.nn import functional as F
    patches = F.normalize(patch_proj, dim=-1).flatten(0, 1)  # (B*N, Dg)
    words = F.normalize(word_embeds, dim=-1)  # (C, Dg)
    logits = scale * patches @ words.t()  # (B*N, C)
    targets = targets.flatten(0, 1)  # (B*N, 3)
    groups = (SHAPE_IDX + BACKGROUND_IDX, COLOUR_IDX + BACKGROUND_IDX,
              list(range(len(WORDS))))
    terms = []
    for column, group in enumerate(groups):
        target = targets[:, column]  # (B*N,)
        valid = target != IGNORE
        if not valid.any():
            terms.append(logits.sum() * 0.0)
            continue
        # Remap word indices to positions inside the group.
        lookup = torch.full((len(WORDS),), IGNORE, dtype=torch.long)
        lookup[group] = torch.arange(len(group))
        terms.append(F.cross_entropy(logits[valid][:, group],
                                     lookup[target[valid]]))
    return torch.stack(terms).mean()
