"""Pictures: what PCM mixed into an image, caption grids, curves."""
from .caption_grid import CaptionGridHook, draw_caption_grid
from .mixup_figure import draw_mixup, mixup_pairs, save_mixup_figures

__all__ = ['CaptionGridHook', 'draw_caption_grid', 'draw_mixup',
           'mixup_pairs', 'save_mixup_figures']
