"""Feature datasets, the feature store and pipeline transforms."""
from .caption_datasets import CaptionFeatureDataset, SynthCaptionDataset
from .feature_store import FeatureStore, write_feature_store
from .transforms import LoadCLIPFeatures, PackCaptionInputs

__all__ = [
    'CaptionFeatureDataset', 'FeatureStore', 'LoadCLIPFeatures',
    'PackCaptionInputs', 'SynthCaptionDataset', 'write_feature_store'
]
