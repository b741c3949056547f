"""Tiny randomly initialised models for tests and the offline demo."""
from .tiny_clip import (
                        TINY_CLIP_CONFIGS,
                        build_tiny_open_clip,
                        write_model_config,
)
from .tiny_diffusion import build_clip_tokenizer_files, build_tiny_sd_pipeline

__all__ = [
    'TINY_CLIP_CONFIGS', 'build_clip_tokenizer_files', 'build_tiny_open_clip',
    'build_tiny_sd_pipeline', 'write_model_config'
]
