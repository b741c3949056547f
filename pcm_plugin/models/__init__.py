"""PCM-Net model components, registered in mmpretrain's MODELS."""
from .caption_decoder import CaptionTransformerDecoder
from .captioner import PCMCaptioner
from .clip_image_encoder import OpenCLIPImageEncoder
from .clip_reranker import CLIPReranker
from .concept_bank import (
                           default_concept_words,
                           load_concept_bank,
                           save_concept_bank,
)
from .data_preprocessor import CaptionFeaturePreprocessor
from .gpt2_prefix_decoder import GPT2PrefixDecoder
from .losses import CLIPWeightedCELoss, clip_weighted_ce
from .mixup_selection import retrieve_concepts, salient_patch_mixup
from .pcm_mixup import PCMMixup
from .prefix_captioner import PrefixLMCaptioner
from .prefix_mapper import PrefixMapper
from .vs_encoder import VisualSemanticEncoder

__all__ = [
    'CaptionFeaturePreprocessor', 'CaptionTransformerDecoder',
    'CLIPReranker', 'CLIPWeightedCELoss', 'GPT2PrefixDecoder',
    'OpenCLIPImageEncoder',
    'PCMCaptioner', 'PCMMixup', 'PrefixLMCaptioner', 'PrefixMapper',
    'VisualSemanticEncoder',
    'clip_weighted_ce', 'default_concept_words', 'load_concept_bank',
    'retrieve_concepts', 'salient_patch_mixup', 'save_concept_bank'
]
