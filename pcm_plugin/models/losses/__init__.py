"""Losses of PCM-Net."""
from .clip_weighted_ce import (
                               CLIPWeightedCELoss,
                               clip_sample_weights,
                               clip_weighted_ce,
)

__all__ = ['CLIPWeightedCELoss', 'clip_sample_weights', 'clip_weighted_ce']
