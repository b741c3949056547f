"""The package version: the one place it is written.

``setup.py`` reads this file as text (building must not import the package
and its heavy dependencies) and ``pcm_plugin.__version__`` re-exports it.
"""
__version__ = '0.2.0'
