"""Feature datasets, the feature store and pipeline transforms."""
from .caption_datasets import (
    CaptionFeatureDataset,
    CaptionImageDataset,
    SynthCaptionDataset,
)
from .feature_store import FeatureStore, write_feature_store
from .transforms import LoadCLIPFeatures, LoadCLIPImage, PackCaptionInputs

__all__ = [
    'CaptionImageDataset', 'LoadCLIPImage',
    'CaptionFeatureDataset', 'FeatureStore', 'LoadCLIPFeatures',
    'PackCaptionInputs', 'SynthCaptionDataset', 'write_feature_store'
]
