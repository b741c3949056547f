"""The CLIP side that every floor above uses: open_clip models loaded from
local files, their image preprocessing and feature extraction
(``clip_features``), and reading images (``image_io``).

The bottom floor of the package with ``utils`` (docs/architecture.md): it
imports nothing of ``pcm_plugin``. Modules are imported explicitly (``from
pcm_plugin.clip.clip_features import load_open_clip``); open_clip and PIL
load only inside the functions that need them.
"""
