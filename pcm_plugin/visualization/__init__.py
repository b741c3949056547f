"""Pictures: what PCM mixed into an image."""
from .mixup_figure import draw_mixup, mixup_pairs, save_mixup_figures

__all__ = ['draw_mixup', 'mixup_pairs', 'save_mixup_figures']
