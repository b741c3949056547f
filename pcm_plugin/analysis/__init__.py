"""Measurement helpers behind tools/analysis (not imported by pcm_plugin)."""
