"""Caption metrics (pycocoevalcap scorers, offline)."""
from .caption_metric import COCOCaptionMetric, score_captions
from .coco_gt import *  # noqa: F401,F403
from .dump_captions import DumpCaptions

__all__ = ['COCOCaptionMetric', 'DumpCaptions', 'score_captions']
