"""Rasterise scenes: the exact "real" renderer and the shifted "synthetic" one.

A scene is first turned into :class:`Sprite` s (a polygon outline, a fill
colour, a position); the defects of :mod:`.defects` edit sprites, never
pixels. Polygons are drawn at 4x resolution and box-filtered down, so edges
are anti-aliased while object interiors keep their exact colour.

* :func:`render_real` draws what the caption says on a flat background:
  the test images and the mini CLIP's training images.
* :func:`render_synthetic` is the stand-in for the diffusion prior: same
  layout, different *style* (textured, tinted background; shaded, jittered
  fills; outlines; small rotations; blur and grain).
"""
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scenes import BACKGROUNDS, CANVAS, COLOURS, Scene

SUPERSAMPLE = 4


def _regular_polygon(points: int, radii: Sequence[float],
                     phase: float = -np.pi / 2) -> np.ndarray:
    angles = phase + np.arange(points * len(radii)) * 2 * np.pi / (
        points * len(radii))
    r = np.tile(np.asarray(radii, dtype=np.float64), points)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)
          - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)  # (64, 2)
    pts -= (pts.max(0) + pts.min(0)) / 2  # centre the bounding box
    return pts / np.abs(pts).max()


def _cross(arm: float = 0.36) -> np.ndarray:
    a = arm
    return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a),
                     (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)],
                    dtype=np.float64)


# Unit outlines (max |coord| about 1, y pointing down), centred so that the
# object centre is always inside the shape.
SHAPE_POLYGONS: Dict[str, np.ndarray] = {
    'circle': _regular_polygon(64, [1.0]),
    'square': np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)],
                       dtype=np.float64) * 0.82,
    'triangle': _regular_polygon(3, [1.0]) + np.array([0.0, 0.22]),
    'star': _regular_polygon(5, [1.0, 0.45]) + np.array([0.0, 0.1]),
    'heart': _heart(),
    'cross': _cross(),
    'diamond': np.array([(0, -1), (0.72, 0), (0, 1), (-0.72, 0)],
                        dtype=np.float64),
}


@dataclass
class Sprite:
    """One object as drawn.

    Args:
        outline (np.ndarray): (P, 2) unit polygon (before scale/rotation).
        rgb (tuple): Fill colour.
        x (float): Centre column (pixels).
        y (float): Centre row (pixels).
        radius (float): Scale in pixels.
        rotation (float): Radians, counter-clockwise on screen.
        warp (np.ndarray, optional): (2, 2) linear distortion applied to the
            unit outline first (defects).
    """
    outline: np.ndarray
    rgb: tuple
    x: float
    y: float
    radius: float
    rotation: float = 0.0
    warp: Optional[np.ndarray] = None

    def polygon(self) -> np.ndarray:
        """(P, 2) outline in pixel coordinates."""
        pts = self.outline
        if self.warp is not None:
            pts = pts @ self.warp.T  # (P, 2)
        c, s = np.cos(self.rotation), np.sin(self.rotation)
        rot = np.array([[c, s], [-s, c]])
        pts = pts @ rot.T * self.radius  # (P, 2)
        return pts + np.array([self.x, self.y])


def scene_sprites(scene: Scene) -> List[Sprite]:
    """The sprites of a scene, exactly as described (no rotation)."""
    return [Sprite(outline=SHAPE_POLYGONS[o.shape], rgb=COLOURS[o.colour],
                   x=o.x, y=o.y, radius=o.radius) for o in scene.objects]


def sprite_alpha(sprite: Sprite, size: int = CANVAS) -> np.ndarray:
    """(size, size) float32 coverage of a sprite in [0, 1]."""
    big = size * SUPERSAMPLE
    canvas = Image.new('L', (big, big), 0)
    poly = (sprite.polygon() * SUPERSAMPLE).ravel().tolist()
    ImageDraw.Draw(canvas).polygon(poly, fill=255)
    small = canvas.resize((size, size), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _composite(image: np.ndarray, fill: np.ndarray,
               alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]  # (H, W, 1)
    return image * (1.0 - a) + fill * a


def render_real(scene: Scene, *, sprites: Optional[List[Sprite]] = None,
                size: int = CANVAS) -> np.ndarray:
    """Draw a scene exactly: flat background, flat fills.

    Args:
        scene (Scene): The scene.
        sprites (list[Sprite], optional): Override the scene's sprites.
        size (int): Image side. Defaults to 64.

    Returns:
        np.ndarray: (size, size, 3) uint8 RGB.
    """
    if sprites is None:
        sprites = scene_sprites(scene)
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = BACKGROUNDS[scene.background]
    for sprite in sprites:
        image = _composite(image, np.asarray(sprite.rgb, np.float32),
                           sprite_alpha(sprite, size))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# ------------------------------------------------------------ synthetic
def _smooth_noise(rng: np.random.Generator, size: int, cells: int,
                  channels: int = 1) -> np.ndarray:
    """(size, size, channels) low-frequency noise in about [-1, 1]."""
    coarse = rng.uniform(0, 255, (cells, cells, channels)).astype(np.uint8)
    if channels == 1:
        img = Image.fromarray(coarse[..., 0], 'L')
    else:
        img = Image.fromarray(coarse, 'RGB')
    up = np.asarray(img.resize((size, size), Image.BICUBIC), np.float32)
    return (up.reshape(size, size, channels) - 127.5) / 127.5


def sample_style(rng: np.random.Generator) -> Dict:
    """Random style parameters of one synthetic image."""
    return dict(
        bg_tint=rng.uniform(-14, 14, 3),
        bg_gradient=rng.uniform(-28, 28),
        bg_texture=rng.uniform(10, 26),
        bg_cells=int(rng.integers(3, 9)),
        fill_jitter=rng.uniform(-16, 16, 3),
        shading=rng.uniform(20, 45),
        light_angle=rng.uniform(0, 2 * np.pi),
        outline=bool(rng.random() < 0.6),
        outline_strength=rng.uniform(0.35, 0.7),
        max_rotation=0.25,
        scale_jitter=0.1,
        blur=rng.uniform(0.35, 0.9),
        grain=rng.uniform(3, 8),
        cast=rng.uniform(0.9, 1.1, 3),
    )


def stylise_sprites(sprites: Sequence[Sprite], style: Dict,
                    rng: np.random.Generator) -> List[Sprite]:
    """Small random rotations and scale changes (layout noise)."""
    out = []
    for sprite in sprites:
        rotation = rng.uniform(-1, 1) * style['max_rotation']
        scale = 1.0 + rng.uniform(-1, 1) * style['scale_jitter']
        out.append(replace(sprite, rotation=sprite.rotation + rotation,
                           radius=sprite.radius * scale))
    return out


def _background(scene: Scene, style: Dict, rng: np.random.Generator,
                size: int) -> np.ndarray:
    base = np.asarray(BACKGROUNDS[scene.background], np.float32)
    rows = np.linspace(-1, 1, size, dtype=np.float32)[:, None, None]
    texture = _smooth_noise(rng, size, style['bg_cells'], 3)
    return (base + style['bg_tint'] + style['bg_gradient'] * rows
            + style['bg_texture'] * texture)  # (H, W, 3)


def _shaded_fill(sprite: Sprite, style: Dict, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ux, uy = np.cos(style['light_angle']), np.sin(style['light_angle'])
    ramp = ((xx - sprite.x) * ux + (yy - sprite.y) * uy) / max(
        sprite.radius, 1.0)  # (H, W), about [-1, 1] over the object
    base = np.asarray(sprite.rgb, np.float32) + style['fill_jitter']
    return base - style['shading'] * np.clip(ramp, -1.5, 1.5)[..., None]


def _edge(alpha: np.ndarray) -> np.ndarray:
    img = Image.fromarray(np.uint8(alpha * 255), 'L')
    inner = np.asarray(img.filter(ImageFilter.MinFilter(3)), np.float32)
    return np.clip(alpha - inner / 255.0, 0.0, 1.0)


def render_synthetic(scene: Scene, *, rng: np.random.Generator,
                     sprites: Optional[List[Sprite]] = None,
                     size: int = CANVAS) -> np.ndarray:
    """Draw a scene in the synthetic style (the diffusion stand-in).

    Args:
        scene (Scene): The scene (its background is used).
        rng (np.random.Generator): Style stream of this image.
        sprites (list[Sprite], optional): Sprites to draw (e.g. with
            defects applied); the scene's own when None.
        size (int): Image side. Defaults to 64.

    Returns:
        np.ndarray: (size, size, 3) uint8 RGB.
    """
    if sprites is None:
        sprites = scene_sprites(scene)
    style = sample_style(rng)
    image = _background(scene, style, rng, size)
    for sprite in stylise_sprites(sprites, style, rng):
        alpha = sprite_alpha(sprite, size)
        image = _composite(image, _shaded_fill(sprite, style, size), alpha)
        if style['outline']:
            dark = image * (1.0 - style['outline_strength'])
            image = _composite(image, dark, _edge(alpha))
    image = image * style['cast']
    image = np.clip(image, 0, 255).astype(np.uint8)
    pil = Image.fromarray(image).filter(
        ImageFilter.GaussianBlur(style['blur']))
    grain = rng.normal(0, style['grain'], (size, size, 3))
    image = np.asarray(pil, np.float32) + grain
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
