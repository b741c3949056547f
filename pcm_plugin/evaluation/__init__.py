"""Caption metrics (pycocoevalcap scorers, offline)."""
from .caption_metric import COCOCaptionMetric, score_captions
from .coco_gt import *  # noqa: F401,F403

__all__ = ['COCOCaptionMetric', 'score_captions']
