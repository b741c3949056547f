"""Start-up: how long ``import pcm_plugin`` and every tool's ``--help``
take (what a fresh process imports before it answers is
:mod:`pcm_plugin.testing.startup`'s, for the tests).

A user waits for a new interpreter, so every timing here is one: the
candidates run interleaved (:func:`.perf.timed_interleaved`), so load from
other work on the machine hits them alike.
"""
import subprocess
import sys
from typing import Callable, Dict, List

from pcm_plugin.testing.startup import tool_scripts

from .perf import timed_interleaved


def _fresh_process(cmd: List[str], repo: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(cmd, cwd=repo, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return run


def startup_times(repo: str, *, reps: int = 7, warmup: int = 1) -> Dict:
    """Fresh-process seconds of ``import mmpretrain`` against ``import
    pcm_plugin``, and of ``--help`` of every tool.

    Args:
        repo (str): The checkout whose package and tools are timed.
        reps (int): Timed runs of each (median and IQR reported).
        warmup (int): Untimed runs first (file caches).

    Returns:
        dict: ``imports``: ``mmpretrain`` and ``pcm_plugin`` (``median_s``,
        ``iqr_s``, ``runs``) and ``pcm_plugin_over_mmpretrain``; ``help``:
        ``tools`` (the same per tool), ``max_s`` and ``slowest``.
    """
    imports = timed_interleaved(
        {name: _fresh_process([sys.executable, '-c', f'import {name}'], repo)
         for name in ('mmpretrain', 'pcm_plugin')},
        warmup=warmup, reps=reps)
    imports['pcm_plugin_over_mmpretrain'] = (
        imports['pcm_plugin']['median_s'] / imports['mmpretrain']['median_s'])
    helps = timed_interleaved(
        {tool: _fresh_process([sys.executable, tool, '--help'], repo)
         for tool in tool_scripts(repo)}, warmup=warmup, reps=reps)
    slowest = max(helps, key=lambda tool: helps[tool]['median_s'])
    return dict(imports=imports,
                help=dict(tools=helps, max_s=helps[slowest]['median_s'],
                          slowest=slowest))
