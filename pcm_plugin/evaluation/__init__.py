"""Caption metrics: pycocoevalcap scorers (offline) and CLIPScore."""
from .caption_metric import PAPER_SCALE, COCOCaptionMetric, score_captions
from .clip_score import CLIPScoreMetric, clip_score, ref_clip_score
from .coco_gt import *  # noqa: F401,F403
from .dump_captions import DumpCaptions

__all__ = ['CLIPScoreMetric', 'COCOCaptionMetric', 'DumpCaptions',
           'PAPER_SCALE', 'clip_score', 'ref_clip_score', 'score_captions']
