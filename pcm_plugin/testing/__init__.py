"""Tiny randomly initialised models for tests and the offline demo."""
from .tiny_clip import TINY_CLIP_CONFIGS, build_tiny_open_clip, register_model_config

__all__ = ['TINY_CLIP_CONFIGS', 'build_tiny_open_clip', 'register_model_config']
