"""Salient-object defects of the synthetic images (docs/method.md §1).

Text-to-image models get the *salient objects* of a caption wrong: a wrong
colour, a malformed or missing object, an object nobody asked for. PCM-Net
exists to cope with that, so the mini world injects exactly these failures.

Independence: whether image ``k`` is defective, which defect it gets and
how, are drawn from an RNG stream keyed only by ``(seed, k)``, never by
the scene, the caption or the method under test. The defect decision is
``u_k < rate`` with one uniform ``u_k`` per image, so the defective images
at rate 0.3 are a subset of those at rate 0.6, with identical defects:
comparisons across rates differ in the defects only.
"""
from dataclasses import replace
from typing import Dict, List, Optional

import numpy as np

from .render import SHAPE_POLYGONS, Sprite
from .scenes import COLOURS, GRID, RADIUS, SHAPES, Scene, cell_centre

DEFECT_TYPES = ('wrong_colour', 'distorted', 'missing', 'extra')
_STREAM = 7919  # separates defect streams from scene and style streams


def defect_rng(seed: int, image_index: int) -> np.random.Generator:
    """The defect stream of image ``image_index`` (scene-independent)."""
    return np.random.default_rng([seed, _STREAM, image_index])


def plan_defect(image_index: int, num_objects: int, *, rate: float,
                seed: int) -> Optional[Dict]:
    """Decide whether and how image ``image_index`` is corrupted.

    The draws happen in a fixed order whatever the rate, so the plan of a
    defective image does not depend on the rate.

    Args:
        image_index (int): Index of the image in the training corpus.
        num_objects (int): Objects in its scene (to pick the target).
        rate (float): Probability of a defect, in [0, 1].
        seed (int): Defect seed.

    Returns:
        dict | None: ``type`` (one of :data:`DEFECT_TYPES`), ``target``
        (object index) and ``u`` (the uniforms that parametrise the
        defect); None for a clean image.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f'defect rate {rate} is not in [0, 1]')
    rng = defect_rng(seed, image_index)
    decision = rng.random()
    kind = DEFECT_TYPES[int(rng.integers(len(DEFECT_TYPES)))]
    target_u, *params = rng.random(6)
    if decision >= rate:
        return None
    return dict(type=kind, target=int(target_u * num_objects),
                u=[float(p) for p in params])


def _wrong_colour(sprite: Sprite, colour: str, u: List[float]) -> Sprite:
    others = [c for c in COLOURS if c != colour]
    return replace(sprite, rgb=COLOURS[others[int(u[0] * len(others))]])


def _densify(outline: np.ndarray, points: int = 96) -> np.ndarray:
    closed = np.concatenate([outline, outline[:1]])  # (P + 1, 2)
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0, t[-1], points, endpoint=False)
    return np.stack([np.interp(s, t, closed[:, 0]),
                     np.interp(s, t, closed[:, 1])], axis=1)  # (points, 2)


def _distorted(sprite: Sprite, u: List[float]) -> Sprite:
    """Stretched along a random axis and melted (wobbly outline)."""
    outline = _densify(sprite.outline)
    angle = np.pi * u[0]
    stretch = 1.3 + 0.35 * u[1]
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    warp = rot @ np.diag([stretch, 1.0 / stretch]) @ rot.T  # (2, 2)
    phase = 2 * np.pi * u[2]
    theta = np.arctan2(outline[:, 1], outline[:, 0])
    wobble = 1.0 + 0.15 * np.sin(3 * theta + phase) + 0.08 * np.sin(
        5 * theta + 2 * phase)
    return replace(sprite, outline=outline * wobble[:, None], warp=warp)


def _free_cells(scene: Scene) -> List[tuple]:
    taken = {tuple(o.cell) for o in scene.objects}
    return [(r, c) for r in range(GRID) for c in range(GRID)
            if (r, c) not in taken]


def _extra(scene: Scene, u: List[float]) -> Sprite:
    """A spurious medium/large object in a free cell (may touch others)."""
    cells = _free_cells(scene)
    cell = cells[int(u[0] * len(cells))]
    x, y = cell_centre(cell)
    colours = list(COLOURS)
    size = 'large' if u[3] < 0.5 else 'medium'
    return Sprite(outline=SHAPE_POLYGONS[SHAPES[int(u[1] * len(SHAPES))]],
                  rgb=COLOURS[colours[int(u[2] * len(colours))]],
                  x=x, y=y, radius=RADIUS[size])


def apply_defect(scene: Scene, sprites: List[Sprite],
                 defect: Optional[Dict]) -> List[Sprite]:
    """Return the sprites to draw for a (possibly) defective image.

    Args:
        scene (Scene): The captioned scene.
        sprites (list[Sprite]): Its exact sprites (one per object).
        defect (dict | None): From :func:`plan_defect`.

    Returns:
        list[Sprite]: A new list; the input is not modified.
    """
    sprites = list(sprites)
    if defect is None:
        return sprites
    kind, target, u = defect['type'], defect['target'], defect['u']
    if kind == 'wrong_colour':
        colour = scene.objects[target].colour
        sprites[target] = _wrong_colour(sprites[target], colour, u)
    elif kind == 'distorted':
        sprites[target] = _distorted(sprites[target], u)
    elif kind == 'missing':
        del sprites[target]
    elif kind == 'extra':
        sprites.append(_extra(scene, u))
    else:
        raise ValueError(f'unknown defect type {kind!r}; expected one of '
                         f'{DEFECT_TYPES}')
    return sprites
