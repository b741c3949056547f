"""Scenes of the mini world and the template sentences that describe them.

A scene is a background and one to three coloured shapes on a 3x3 grid of
cells, each with a size and a position jittered inside its cell. Captions
are built from varied templates (object lists, spatial relations, absolute
positions, background phrases) and are always *true* of the scene: the
"real" renderer draws the scene exactly as described.

Every scene is drawn from its own RNG stream ``(seed, split, index)``, so
scene ``k`` of a split is the same whatever the split size, and the corpus
is fully determined by the seed.
"""
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CANVAS = 64  # image side in pixels; every coordinate below is in pixels
GRID = 3  # 3x3 grid of cells

SHAPES = ('circle', 'square', 'triangle', 'star', 'heart', 'cross',
          'diamond')
COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (215, 35, 35),
    'green': (35, 175, 70),
    'blue': (35, 70, 215),
    'yellow': (245, 215, 35),
    'purple': (135, 50, 185),
    'orange': (245, 135, 25),
}
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    'snow': (232, 236, 242),
    'sand': (212, 190, 140),
    'sky': (140, 190, 235),
    'night': (22, 26, 52),
    'grass': (78, 120, 52),
}
SIZES = ('small', 'medium', 'large')
RADIUS = {'small': 6.0, 'medium': 8.5, 'large': 11.5}

# Phrases. Several per meaning so that captions vary like human ones.
SIZE_WORDS = {'small': ('small', 'little', 'tiny'), 'medium': ('',),
              'large': ('large', 'big')}
BACKGROUND_PREP = {
    'snow': ('on the snow', 'in the snow'),
    'sand': ('on the sand', 'on the beach'),
    'sky': ('in the sky', 'against the clear sky'),
    'night': ('at night', 'in the dark'),
    'grass': ('on the grass', 'on the lawn'),
}
BACKGROUND_NOUN = {
    'snow': ('a snowy field', 'a field of snow', 'white snow'),
    'sand': ('a sandy beach', 'the sand', 'a beach'),
    'sky': ('a clear sky', 'the open sky', 'the sky'),
    'night': ('a dark night sky', 'the night sky', 'a dark background'),
    'grass': ('a grassy field', 'the grass', 'a lawn'),
}
ROW_WORDS = ('top', 'middle', 'bottom')
COL_WORDS = ('left', 'center', 'right')
RELATIONS = {
    'left': ('to the left of', 'left of', 'on the left of'),
    'right': ('to the right of', 'right of', 'on the right of'),
    'above': ('above', 'over'),
    'below': ('below', 'under', 'beneath'),
}
INVERSE = {'left': 'right', 'right': 'left', 'above': 'below',
           'below': 'above'}
SPLIT_CODES = {'train': 1, 'val': 2, 'test': 3, 'clip': 4, 'clip_eval': 5,
               'clip_pretrain': 6}


@dataclass
class SceneObject:
    """One shape of a scene.

    Args:
        shape (str): A key of :data:`SHAPES`.
        colour (str): A key of :data:`COLOURS`.
        size (str): ``'small'``, ``'medium'`` or ``'large'``.
        cell (tuple[int, int]): Grid cell ``(row, col)``, row 0 at the top.
        x (float): Centre column in pixels.
        y (float): Centre row in pixels.
        radius (float): Circumradius in pixels.
    """
    shape: str
    colour: str
    size: str
    cell: Tuple[int, int]
    x: float
    y: float
    radius: float


@dataclass
class Scene:
    """A background and 1-3 objects (see :class:`SceneObject`)."""
    background: str
    objects: List[SceneObject] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict) -> 'Scene':
        objects = [SceneObject(**{**o, 'cell': tuple(o['cell'])})
                   for o in data['objects']]
        return cls(background=data['background'], objects=objects)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The RNG stream of scene ``index`` of ``split``."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def cell_centre(cell: Sequence[int]) -> Tuple[float, float]:
    """Pixel centre ``(x, y)`` of a grid cell."""
    step = CANVAS / GRID
    return (cell[1] + 0.5) * step, (cell[0] + 0.5) * step


def _place(rng: np.random.Generator, cell: Tuple[int, int],
           radius: float) -> Tuple[float, float]:
    cx, cy = cell_centre(cell)
    lo, hi = radius + 1.0, CANVAS - 1.0 - radius
    x = float(np.clip(cx + rng.uniform(-2.5, 2.5), lo, hi))
    y = float(np.clip(cy + rng.uniform(-2.5, 2.5), lo, hi))
    return x, y


def _overlaps(objects: Sequence[SceneObject], x: float, y: float,
              radius: float, gap: float = 1.5) -> bool:
    return any(np.hypot(o.x - x, o.y - y) < o.radius + radius + gap
               for o in objects)


def sample_scene(rng: np.random.Generator,
                 num_objects: Optional[int] = None) -> Scene:
    """Draw a random scene whose objects do not touch.

    Args:
        rng (np.random.Generator): The scene's RNG stream.
        num_objects (int, optional): 1-3; drawn with probabilities
            0.4/0.35/0.25 when None.

    Returns:
        Scene: The scene.
    """
    if num_objects is None:
        num_objects = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    background = str(rng.choice(list(BACKGROUNDS)))
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    objects: List[SceneObject] = []
    order = rng.permutation(len(cells))
    for cell_no in order:
        if len(objects) == num_objects:
            break
        cell = cells[int(cell_no)]
        size = str(rng.choice(SIZES))
        radius = RADIUS[size] + float(rng.uniform(-0.5, 0.5))
        x, y = _place(rng, cell, radius)
        if _overlaps(objects, x, y, radius):
            # Too close to a neighbour: a small object in this cell fits.
            size = 'small'
            radius = RADIUS[size]
            x, y = _place(rng, cell, radius)
            if _overlaps(objects, x, y, radius):
                continue
        objects.append(SceneObject(
            shape=str(rng.choice(SHAPES)), colour=str(rng.choice(
                list(COLOURS))), size=size, cell=cell, x=x, y=y,
            radius=radius))
    return Scene(background=background, objects=objects)


# ----------------------------------------------------------------- captions
def _article(phrase: str) -> str:
    return ('an ' if phrase[0] in 'aeiou' else 'a ') + phrase


def object_phrase(obj: SceneObject, rng: np.random.Generator) -> str:
    """``'a small red circle'``; the size is sometimes left out."""
    size = str(rng.choice(SIZE_WORDS[obj.size]))
    if size and rng.random() < 0.2:
        size = ''
    words = [w for w in (size, obj.colour, obj.shape) if w]
    return _article(' '.join(words))


def position_phrase(cell: Sequence[int], rng: np.random.Generator) -> str:
    """Absolute position of a cell: ``'in the top left corner'``."""
    row, col = ROW_WORDS[cell[0]], COL_WORDS[cell[1]]
    if row == 'middle' and col == 'center':
        return str(rng.choice(['in the center', 'in the middle']))
    if row == 'middle':
        return str(rng.choice([f'on the {col}', f'on the {col} side']))
    if col == 'center':
        return str(rng.choice([f'at the {row}', f'near the {row}']))
    return str(rng.choice([f'in the {row} {col} corner',
                           f'at the {row} {col}']))


def relation(a: SceneObject, b: SceneObject,
             rng: np.random.Generator) -> str:
    """A true spatial relation of ``a`` to ``b`` (a key of RELATIONS)."""
    options = []
    if a.cell[1] < b.cell[1]:
        options.append('left')
    if a.cell[1] > b.cell[1]:
        options.append('right')
    if a.cell[0] < b.cell[0]:
        options.append('above')
    if a.cell[0] > b.cell[0]:
        options.append('below')
    return str(rng.choice(options))


def _background_phrases(scene: Scene, rng) -> Tuple[str, str]:
    """A prepositional phrase and a noun phrase for the scene's background
    (drawn in that order: the corpus depends on the RNG sequence)."""
    prep = str(rng.choice(BACKGROUND_PREP[scene.background]))
    noun = str(rng.choice(BACKGROUND_NOUN[scene.background]))
    return prep, noun


def _one_object(scene: Scene, rng, template: int) -> str:
    (obj,) = scene.objects
    o = object_phrase(obj, rng)
    p = position_phrase(obj.cell, rng)
    bp, bn = _background_phrases(scene, rng)
    return [
        f'{o} {p} {bp}',
        f'{o} {bp}',
        f'{o} {p}',
        f'there is {o} {p}',
        f'a photo of {o} {bp}',
        f'{bn} with {o} {p}',
        f'{o} {p} of the picture',
        f'a single {o[o.index(" ") + 1:]} {bp}',
    ][template]


def _two_objects(scene: Scene, rng, template: int) -> str:
    a, b = scene.objects
    if rng.random() < 0.5:
        a, b = b, a
    pa, pb = object_phrase(a, rng), object_phrase(b, rng)
    rel = relation(a, b, rng)
    r = str(rng.choice(RELATIONS[rel]))
    r_inv = str(rng.choice(RELATIONS[INVERSE[rel]]))
    bp, bn = _background_phrases(scene, rng)
    return [
        f'{pa} {r} {pb}',
        f'{pa} {r} {pb} {bp}',
        f'{pa} and {pb} {bp}',
        f'{bn} with {pa} {r} {pb}',
        f'{pb} {r_inv} {pa}',
        f'there is {pa} {r} {pb}',
        f'a photo of {pa} and {pb} {bp}',
        f'{pa} {position_phrase(a.cell, rng)} and {pb} '
        f'{position_phrase(b.cell, rng)}',
        f'two shapes {bp}, {pa} and {pb}',
    ][template]


def _three_objects(scene: Scene, rng, template: int) -> str:
    a, b, c = (scene.objects[i] for i in rng.permutation(3))
    pa, pb, pc = (object_phrase(o, rng) for o in (a, b, c))
    r = str(rng.choice(RELATIONS[relation(a, b, rng)]))
    bp, bn = _background_phrases(scene, rng)
    return [
        f'{pa}, {pb} and {pc}',
        f'{pa}, {pb} and {pc} {bp}',
        f'three shapes {bp}, {pa}, {pb} and {pc}',
        f'{bn} with {pa}, {pb} and {pc}',
        f'{pa} {r} {pb}, and {pc} {position_phrase(c.cell, rng)}',
        f'a photo of {pa}, {pb} and {pc}',
        f'there are three shapes, {pa}, {pb} and {pc}',
    ][template]


_DESCRIBERS = {1: (_one_object, 8), 2: (_two_objects, 9),
               3: (_three_objects, 7)}


def num_templates(scene: Scene) -> int:
    """How many distinct templates describe a scene of this size."""
    return _DESCRIBERS[len(scene.objects)][1]


def describe(scene: Scene, rng: np.random.Generator,
             template: Optional[int] = None) -> str:
    """A true caption of ``scene``.

    Args:
        scene (Scene): The scene (1-3 objects).
        rng (np.random.Generator): Draws the template and the phrasing.
        template (int, optional): Template index; random when None.

    Returns:
        str: The caption, lower case, no final period.
    """
    if not 1 <= len(scene.objects) <= 3:
        raise ValueError(f'scene has {len(scene.objects)} objects; the '
                         'caption templates cover 1-3')
    fn, count = _DESCRIBERS[len(scene.objects)]
    if template is None:
        template = int(rng.integers(count))
    return ' '.join(fn(scene, rng, template).split())


def describe_many(scene: Scene, rng: np.random.Generator,
                  num: int) -> List[str]:
    """``num`` captions from distinct templates (references of a scene)."""
    count = num_templates(scene)
    if num > count:
        raise ValueError(f'{num} references asked but only {count} '
                         'templates describe this scene')
    templates = rng.permutation(count)[:num]
    return [describe(scene, rng, int(t)) for t in templates]


def short_description(scene: Scene, rng: np.random.Generator) -> str:
    """A partial caption naming one attribute or one object.

    Alt-text-like captions ("a photo of a star", "something red") that
    teach the mini CLIP single concept words, as web captions teach CLIP.
    """
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    options = [
        f'a photo of {_article(obj.shape)}',
        _article(obj.shape),
        f'{_article(obj.colour)} shape',
        f'something {obj.colour}',
        f'a photo of {_article(obj.colour + " " + obj.shape)}',
        f'a photo of {rng.choice(BACKGROUND_NOUN[scene.background])}',
        f'{rng.choice(BACKGROUND_NOUN[scene.background])}',
    ]
    return str(options[int(rng.integers(len(options)))])


def generate_split(split: str, num: int, *, seed: int,
                   refs: int = 0) -> Tuple[List[Scene], List[List[str]]]:
    """Scenes of a split with their captions.

    Args:
        split (str): ``'train'``, ``'val'``, ``'test'``, ``'clip'`` or
            ``'clip_eval'`` (each has its own RNG streams).
        num (int): Number of scenes.
        seed (int): Corpus seed.
        refs (int): Captions per scene from distinct templates; 0 = one
            caption from a random template (training captions).

    Returns:
        tuple[list[Scene], list[list[str]]]: Scenes and their captions.
    """
    scenes, captions = [], []
    for index in range(num):
        rng = scene_rng(seed, split, index)
        scene = sample_scene(rng)
        scenes.append(scene)
        captions.append(describe_many(scene, rng, refs) if refs
                        else [describe(scene, rng)])
    return scenes, captions


def world_words() -> Dict[str, Tuple[str, ...]]:
    """The concept words of the world: shape nouns, colours, backgrounds."""
    return dict(shapes=SHAPES, colours=tuple(COLOURS),
                backgrounds=tuple(BACKGROUNDS))
