"""Reading images for feature extraction, with clear errors for bad files.

Every failure a large image folder produces (a missing, zero-byte, corrupt
or truncated file, a decompression bomb) becomes a :class:`BadImageError`
naming the file and the fix; the extractor then stops or, with
``--skip-bad``, logs and counts it. Grayscale, palette, CMYK and 16-bit
images are converted to RGB; images with transparency are composited on
white (``convert('RGB')`` would keep whatever colour hides under alpha 0,
often black). EXIF orientation is ignored, as in CLIP's own preprocessing.
"""
import os
import os.path as osp
from collections import Counter
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

# PIL's own default (~89.5 M pixels, a 9459x9459 image).
DEFAULT_MAX_PIXELS = 89_478_485
# What a folder of images may hold: every format the pinned PIL decodes that
# a photo collection carries (a user giving a folder expects all of its
# pictures captioned, not the JPEGs and PNGs only). GIF: its first frame.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.gif', '.bmp', '.tif',
                    '.tiff')


class BadImageError(ValueError):
    """An unreadable image; ``path`` names it, the message says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = path
        self.reason = reason


def candidate_paths(image_dir: str, image_id: str,
                    file_name: Optional[str] = None) -> List[str]:
    """Where an entry's image may be: its ``file_name`` or ``<id>.<ext>``."""
    if file_name:
        return [osp.join(image_dir, file_name)]
    return [osp.join(image_dir, image_id + ext) for ext in IMAGE_EXTENSIONS]


def resolve_path(candidates: Sequence[str]) -> str:
    """The first existing candidate, else :class:`BadImageError`."""
    for path in candidates:
        if osp.isfile(path):
            return path
    tried = ', '.join(candidates)
    raise BadImageError(candidates[0], f'image file not found (tried '
                        f'{tried}); check --image-dir')


def _open(path: str, max_pixels: Optional[int]):
    # PIL's global bomb limit is replaced by the explicit check below, so
    # that --max-pixels works both ways and the message names the flag.
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    width, height = image.size
    if max_pixels and width * height > max_pixels:
        image.close()
        raise BadImageError(
            path, f'{width}x{height} = {width * height} pixels exceeds '
            f'--max-pixels {max_pixels} (decompression-bomb guard); raise '
            '--max-pixels (0 = no limit) if the image is genuine')
    return image


def to_rgb(image):
    """RGB copy of a PIL image; transparency is composited on white."""
    if image.mode == 'P' and 'transparency' in image.info:
        image = image.convert('RGBA')
    if image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = image.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert('RGB')
    if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        wide = image.mode.startswith('I;16') or (array.size and
                                                 array.max() > 255)
        array = np.clip(array / (257.0 if wide else 1.0), 0, 255)
        array = np.round(array).astype(np.uint8)
        image = Image.fromarray(array, mode='L')
    return image.convert('RGB')


def load_rgb_image(path: str, *,
                   max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
    """Open, fully decode and convert one image to RGB.

    Args:
        path (str): Image file.
        max_pixels (int, optional): Refuse larger images (0/None: no
            limit).

    Returns:
        PIL.Image.Image: An RGB image.

    Raises:
        BadImageError: Missing, empty, unreadable, truncated or too large.
    """
    if not osp.isfile(path):
        raise BadImageError(path, 'image file not found')
    if os.path.getsize(path) == 0:
        raise BadImageError(path, 'zero-byte file (an interrupted copy or '
                            'download?); regenerate or re-copy it')
    try:
        image = _open(path, max_pixels)
    except UnidentifiedImageError:
        raise BadImageError(path, 'not a readable image (corrupt or an '
                            'unsupported format)') from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError
            ) as err:
        if isinstance(err, BadImageError):
            raise
        raise BadImageError(path, f'cannot open image: {err}') from None
    with image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise BadImageError(path, f'truncated or corrupt image data '
                                f'({err})') from None
        return to_rgb(image)


def as_rgb_image(image):
    """An in-memory image as an RGB PIL image.

    Args:
        image (PIL.Image.Image | np.ndarray): A PIL image (converted with
            ``convert('RGB')``) or an (H, W, 3) RGB array (cast to uint8).

    Raises:
        ValueError: An array of another shape.
    """
    if not isinstance(image, np.ndarray):
        return image.convert('RGB')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'an image array must be (H, W, 3) RGB, got shape '
                         f'{image.shape}')
    return Image.fromarray(image.astype(np.uint8))


class ImageListDataset:
    """Map-style dataset of preprocessed images that never raises.

    A bad image yields ``(index, None, message)`` instead of an exception,
    so DataLoader workers survive it and the main process decides (stop or
    skip) with the file name in hand.

    Args:
        candidates (Sequence[Sequence[str]]): Candidate paths per item.
        transform (Callable): PIL image -> tensor (CLIP preprocessing).
        max_pixels (int, optional): See :func:`load_rgb_image`.
    """

    def __init__(self, *, candidates: Sequence[Sequence[str]],
                 transform: Callable,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        self.candidates = candidates
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, index: int) -> Tuple[int, object, Optional[str]]:
        try:
            path = resolve_path(self.candidates[index])
            image = load_rgb_image(path, max_pixels=self.max_pixels)
        except BadImageError as err:
            return index, None, str(err)
        return index, self.transform(image), None


def collate_items(batch: List[Tuple]) -> List[Tuple]:
    """Keep ``(index, tensor or None, error)`` tuples as a list."""
    return batch


def expand_image_inputs(paths: Sequence[str],
                        skipped: Optional[Counter] = None) -> List[str]:
    """Paths with each directory replaced by its image files (sorted).

    Args:
        paths (Sequence[str]): Image files and folders.
        skipped (Counter, optional): Counts, by extension, the files of the
            folders that are left out (no :data:`IMAGE_EXTENSIONS`), for
            the tool to report (:func:`describe_skipped`).

    Returns:
        list[str]: The image paths.
    """
    out = []
    for path in paths:
        if not osp.isdir(path):
            out.append(path)
            continue
        for name in sorted(os.listdir(path)):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                out.append(osp.join(path, name))
            elif skipped is not None and osp.isfile(osp.join(path, name)):
                skipped[osp.splitext(name)[1].lower() or 'no extension'] += 1
    return out


def describe_skipped(skipped: Counter) -> str:
    """``'left out 3 non-image files of the folders (2 x .txt, 1 x .heic;
    images are .png, ...)'``, or ``''`` when none was."""
    if not skipped:
        return ''
    kinds = ', '.join(f'{n} x {ext}' for ext, n in sorted(
        skipped.items(), key=lambda item: (-item[1], item[0])))
    total = sum(skipped.values())
    return (f'left out {total} non-image file{"s" * (total != 1)} of the '
            f'folders ({kinds}; images are {", ".join(IMAGE_EXTENSIONS)})')


def split_readable(paths: Sequence[str]) -> Tuple[List[str],
                                                   List[Tuple[str, str]]]:
    """``(readable paths, [(bad path, reason)])``, decoding each once, so a
    tool can name every bad file before any work."""
    good, bad = [], []
    for path in paths:
        try:
            load_rgb_image(path)
            good.append(path)
        except BadImageError as err:
            bad.append((path, err.reason))
    return good, bad
