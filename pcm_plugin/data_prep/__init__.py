"""Logic behind the data tools (synthesis, feature extraction, concepts).

Modules are imported explicitly (``from pcm_plugin.data_prep import
synthesis``) so that importing the package stays cheap: the heavy libraries
(diffusers, open_clip) load only inside the functions that need them.
"""
