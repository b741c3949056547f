"""High-level entry points."""
from .inference import ImageCaptioner

__all__ = ['ImageCaptioner']
