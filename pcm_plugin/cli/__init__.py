"""The command-line plumbing of ``tools/``: argument parsers
(``launch_args``, standard library only, so ``--help`` answers before
torch loads), config loading and merging, distributed set-up and the
one-line errors (``launch``).

The top floor of the package (docs/architecture.md): it may import every
other floor and none imports it; ``import pcm_plugin`` does not load it.
"""
