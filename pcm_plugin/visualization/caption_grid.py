"""A grid of images with their predicted and reference captions.

Used by the demo's picture and by :class:`CaptionGridHook`, which writes
one grid per validation/test run (mmpretrain's visualization hooks draw on
the image a model reads; PCM-Net reads features, so the hook finds each
image through the annotation file's ``file_name`` under ``image_dir``).
"""
import json
import os.path as osp
import textwrap
from typing import List, Optional, Sequence, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from PIL import Image, ImageDraw, ImageFont

from pcm_plugin.clip.image_io import load_rgb_image
from pcm_plugin.registry import HOOKS
from pcm_plugin.utils.fileio import atomic_path

FONT_SIZE, LINE_HEIGHT = 13, 17


def caption_font():
    """Pillow's scalable default font: its bitmap one is so tight that
    "a photo of a" reads "a photoofa"."""
    return ImageFont.load_default(size=FONT_SIZE)


def draw_caption_grid(items: Sequence[Tuple[str, str, Optional[str]]],
                      out_png: str, *, cols: int = 4, scale: int = 1,
                      wrap: int = 58) -> str:
    """Write a grid of ``(image path, predicted, reference)`` tiles.

    Args:
        items (Sequence[tuple]): Image file, predicted caption, reference
            caption (or None).
        out_png (str): The PNG to write.
        cols (int): Tiles per row. Defaults to 4.
        scale (int): Nearest-neighbour upscaling of small images.
        wrap (int): Characters per caption line.

    Returns:
        str: ``out_png``.
    """
    if not items:
        raise ValueError('no images to draw')
    font = caption_font()
    tiles: List[Image.Image] = []
    for path, pred, ref in items:
        image = load_rgb_image(path)
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale),
                                 Image.NEAREST)
        image.thumbnail((360, 360))
        texts = [('pred: ' + pred, (200, 0, 0))]
        if ref is not None:
            texts.append(('ref:  ' + ref, (0, 0, 0)))
        lines = [(line, colour) for text, colour in texts
                 for line in textwrap.wrap(text, wrap)[:2]]
        tile = Image.new('RGB', (max(image.width, 360), image.height + 8
                                 + LINE_HEIGHT * len(lines)), 'white')
        tile.paste(image, ((tile.width - image.width) // 2, 0))
        draw = ImageDraw.Draw(tile)
        for k, (line, colour) in enumerate(lines):
            draw.text((4, image.height + 4 + LINE_HEIGHT * k), line,
                      fill=colour, font=font)
        tiles.append(tile)
    rows = (len(tiles) + cols - 1) // cols
    width = max(t.width for t in tiles)
    height = max(t.height for t in tiles)
    grid = Image.new('RGB', (min(cols, len(tiles)) * width, rows * height),
                     'white')
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % cols) * width, (i // cols) * height))
    with atomic_path(out_png, suffix='.png') as tmp:
        grid.save(tmp)
    return out_png


def annotation_images(ann_file: str, image_dir: str) -> dict:
    """``image_id -> (image path, first reference or None)`` of an
    annotation JSON whose entries carry ``file_name``."""
    with open(ann_file, encoding='utf-8') as f:
        entries = json.load(f)['data_list']
    out = {}
    for entry in entries:
        name = entry.get('file_name')
        if name:
            refs = entry.get('captions') or [entry.get('caption')]
            out[str(entry['image_id'])] = (osp.join(image_dir, name),
                                           refs[0])
    return out


@HOOKS.register_module()
class CaptionGridHook(Hook):
    """Write ``<log_dir>/<val|test>_captions[_epoch<e>].png`` after each
    validation/test run: the first ``num`` images with their predicted
    and first reference caption.

    Args:
        image_dir (str): Root of the images named by the annotation file's
            ``file_name`` entries.
        num (int): Images per grid. Defaults to 8.
        scale (int): Upscaling of small images. Defaults to 1.
    """

    priority = 'LOW'

    def __init__(self, *, image_dir: str, num: int = 8,
                 scale: int = 1) -> None:
        self.image_dir, self.num, self.scale = image_dir, num, scale
        self._seen: List[Tuple[str, str]] = []
        self.enabled = True

    def before_run(self, runner) -> None:
        """Check the inputs once, at the start: a picture is never worth a
        run, so a problem disables the hook with a warning."""
        if not osp.isdir(self.image_dir):
            self.enabled = False
            runner.logger.warning(
                f'CaptionGridHook: image_dir {self.image_dir} is not a '
                'folder; no caption pictures will be written (fix '
                'custom_hooks[...].image_dir)')

    def _collect(self, outputs) -> None:
        for sample in outputs or []:
            if len(self._seen) < self.num:
                self._seen.append((str(sample.get('image_id')),
                                   sample.get('pred_caption')))

    def before_val_epoch(self, runner) -> None:
        self._seen = []

    before_test_epoch = before_val_epoch

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self._collect(outputs)

    after_test_iter = after_val_iter

    def _write(self, runner, mode: str) -> None:
        if not (self.enabled and is_main_process() and self._seen):
            return
        try:
            self._draw(runner, mode)
        except Exception as err:  # noqa: BLE001  a picture never ends a run
            runner.logger.warning(
                f'CaptionGridHook: no {mode} picture ({type(err).__name__}: '
                f'{" ".join(str(err).split())[:200]}); the run goes on')

    def _draw(self, runner, mode: str) -> None:
        loader = runner.val_dataloader if mode == 'val' else \
            runner.test_dataloader
        images = annotation_images(loader.dataset.ann_file, self.image_dir)
        items = [(images[i][0], pred, images[i][1])
                 for i, pred in self._seen if i in images]
        if not items:
            runner.logger.warning(
                f'CaptionGridHook: no `file_name` for the {mode} images in '
                f'{loader.dataset.ann_file}; no picture written')
            return
        suffix = f'_epoch{runner.epoch}' if mode == 'val' else ''
        out = osp.join(runner.log_dir, f'{mode}_captions{suffix}.png')
        draw_caption_grid(items, out, scale=self.scale)
        runner.logger.info(f'caption grid: {out}')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._write(runner, 'val')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._write(runner, 'test')
