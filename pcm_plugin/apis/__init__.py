"""High-level entry points: captioning images, releasing models."""
from .inference import ImageCaptioner
from .inferencer import PCMCaptionInferencer
from .release import is_release, publish_model, resolve_release

__all__ = ['ImageCaptioner', 'PCMCaptionInferencer', 'is_release',
           'publish_model', 'resolve_release']
