"""The command-line plumbing behind ``tools/``: config loading and merging,
distributed set-up and the one-line errors (``launch``). The argument
parsers are the tools' own.

The top floor of the package (docs/architecture.md): it may import every
other floor and none imports it; ``import pcm_plugin`` does not load it.
"""
