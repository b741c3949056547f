"""Where one tool extraction spends its time: a cProfile run, grouped.

The tool's loop (``_ShardRunner.run``) either waits for decoded batches
(``DataLoader.__next__``: with workers, the time the main process found no
batch ready; with none, the decoding itself), runs the image tower
(``extract_batch``), the CLIP text tower for train captions
(``caption_cosine``) or writes shards. Before the loop come the model load
and the checkpoint checksum, the tool's fixed start-up. cProfile adds a
little per Python call (the forward is a few hundred module calls per
batch, the rest of its time in C++), so the parts are slightly inflated.
"""
import cProfile
import os
import pstats
import time
from typing import Callable, Dict

# label: (file the function is defined in, function name).
PARTS = {
    'model_load': ('pcm_plugin/data_prep/extraction.py', '_load_model'),
    'checkpoint_sha256': ('pcm_plugin/utils/fileio.py', 'file_sha256'),
    'loop': ('pcm_plugin/data_prep/extraction.py', 'run'),
    'wait_for_batches': ('torch/utils/data/dataloader.py', '__next__'),
    'forward': ('pcm_plugin/clip/clip_features.py', 'extract_batch'),
    'caption_cosine': ('pcm_plugin/clip/clip_features.py',
                       'caption_cosine'),
    'write_shards': ('pcm_plugin/data_prep/extraction.py', '_write'),
}


def cumulative_seconds(stats: Dict, file_suffix: str, name: str) -> float:
    """Cumulative seconds of the functions ``name`` defined in a file whose
    path ends with ``file_suffix`` (``pstats.Stats(...).stats``)."""
    total = 0.0
    for (path, _, func), (_, _, _, cumtime, _) in stats.items():
        if func == name and path.replace(os.sep, '/').endswith(file_suffix):
            total += cumtime
    return total


def profile_breakdown(fn: Callable[[], object], *, bare_s: float,
                      top: int = 8) -> Dict:
    """Run ``fn`` once under cProfile; its time by part.

    Args:
        fn (Callable): One whole extraction (e.g.
            :func:`.extraction_bench.tool_fn`).
        bare_s (float): The bare forward's median over the same images,
            for the ``over_bare`` comparison of the forward part.
        top (int): Functions listed by own (``tottime``) seconds.

    Returns:
        dict: ``total_s`` (wall, profiled), ``parts_s`` (cumulative
        seconds per :data:`PARTS` label), ``loop_rest_s``,
        ``forward_share_of_loop``, ``outside_loop_s`` (start-up, config,
        index), ``forward_over_bare``, ``top_tottime``.
    """
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    parts = {label: cumulative_seconds(stats, *where)
             for label, where in PARTS.items()}
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    # The loop's own work besides the forward, the waits and the writes
    # (stacking, numpy copies): what a long run pays per batch.
    rest = parts['loop'] - sum(parts[k] for k in (
        'wait_for_batches', 'forward', 'caption_cosine', 'write_shards'))
    return dict(
        total_s=total, parts_s=parts, loop_rest_s=rest,
        forward_share_of_loop=parts['forward'] / parts['loop'],
        outside_loop_s=total - parts['loop'],
        forward_over_bare=parts['forward'] / bare_s if bare_s else None,
        top_tottime=[dict(function=f'{osp_tail(path)}:{line}({func})',
                          tottime_s=tottime, calls=calls)
                     for (path, line, func), (_, calls, tottime, _, _)
                     in ranked])


def osp_tail(path: str, parts: int = 2) -> str:
    """The last ``parts`` components of ``path`` (short profile names)."""
    return '/'.join(path.replace(os.sep, '/').split('/')[-parts:])
