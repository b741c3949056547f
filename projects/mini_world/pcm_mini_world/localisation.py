"""Does PCM's salient-patch selection land on the objects it names?

PCM-Net picks, per image, the top-M (patch, concept) pairs by the cosine of
CLIP's projected patch tokens with the retrieved concepts' text embeddings
(docs/method.md §3). In the mini world every object's pixels are known, so
each selected pair can be checked: is the patch on an object, and on one
that has the concept (a shape or colour word), or off every object (a
background word)?

Shape letters: ``B`` images, ``N`` patches (``G*G`` grid), ``O`` objects of
a scene, ``K`` concepts retrieved per image, ``M`` selected pairs, ``C``
concept words in the bank, ``Dg`` CLIP joint-space width.
"""
from typing import Dict, List, Sequence

import numpy as np

from .render import scene_sprites, sprite_alpha
from .scenes import BACKGROUNDS, CANVAS, SHAPES, Scene

KINDS = ('shape', 'colour', 'background')


def object_coverage(scene: Scene, grid: int) -> np.ndarray:
    """(O, G*G) fraction of each grid patch that each object covers."""
    if not scene.objects:
        return np.zeros((0, grid * grid), np.float32)
    cell = CANVAS // grid
    alphas = np.stack([sprite_alpha(s) for s in scene_sprites(scene)])
    cover = alphas.reshape(len(alphas), grid, cell, grid, cell).mean((2, 4))
    return cover.reshape(len(alphas), grid * grid)  # (O, N)


def concept_kind(word: str) -> str:
    """``'shape'``, ``'colour'`` or ``'background'`` of a world word."""
    if word in BACKGROUNDS:
        return 'background'
    return 'shape' if word in SHAPES else 'colour'


def localisation_stats(scenes: Sequence[Scene], words: Sequence[str],
                       concept_idx, pair_idx, pair_ok, *, num_patches: int,
                       min_cover: float = 0.25) -> Dict[str, Dict]:
    """Score selected (patch, concept) pairs against the scenes' masks.

    Args:
        scenes (list[Scene]): The B scenes, in batch order.
        words (list[str]): The C concept words of the bank.
        concept_idx (Tensor): (B, K) retrieved concepts.
        pair_idx (Tensor): (B, M) selected pairs (patch ``p // K``, slot
            ``p % K``).
        pair_ok (Tensor): (B, M) bool; False pairs are not counted.
        num_patches (int): N, a square grid.
        min_cover (float): A patch is "on" an object when the object covers
            at least this fraction of it.

    Returns:
        dict: per kind (``shape``, ``colour``, ``background``): ``n``
        pairs, their ``share``, ``on_object`` (patch on any object) and
        ``on_match`` (on an object with that shape / colour; for
        backgrounds: off every object); ``object_patches``, the fraction
        of all patches on an object (the chance rate); ``object_match``,
        the pooled ``on_match`` of shape and colour pairs (the
        localisation target).
    """
    grid = int(round(num_patches ** 0.5))
    K = concept_idx.shape[1]
    counts = {kind: dict(n=0, on_object=0, on_match=0) for kind in KINDS}
    object_patches: List[float] = []
    for b, scene in enumerate(scenes):
        on = object_coverage(scene, grid) >= min_cover  # (O, N)
        object_patches.append(float(on.any(0).mean()))
        for pair, ok in zip(pair_idx[b].tolist(), pair_ok[b].tolist()):
            if not ok:
                continue
            patch, slot = divmod(pair, K)
            word = words[int(concept_idx[b, slot])]
            kind = concept_kind(word)
            hit = on[:, patch]  # (O,)
            if kind == 'background':
                match = not hit.any()
            else:
                match = any(h and getattr(o, kind) == word
                            for h, o in zip(hit, scene.objects))
            c = counts[kind]
            c['n'] += 1
            c['on_object'] += int(hit.any())
            c['on_match'] += int(match)
    total = max(1, sum(c['n'] for c in counts.values()))
    out: Dict = {kind: dict(n=c['n'], share=c['n'] / total,
                            on_object=c['on_object'] / max(c['n'], 1),
                            on_match=c['on_match'] / max(c['n'], 1))
                 for kind, c in counts.items()}
    objects = counts['shape']['n'] + counts['colour']['n']
    out['object_match'] = (counts['shape']['on_match'] +
                           counts['colour']['on_match']) / max(objects, 1)
    out['object_patches'] = float(np.mean(object_patches))
    return out
