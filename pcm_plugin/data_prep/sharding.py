"""Rank/world bookkeeping shared by the sharded data tools.

The tools run the same way as one plain process or under ``torchrun``: each
rank reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment and
takes a fixed slice of a *global* work plan (batches or shards numbered the
same way whatever the world size), so a rank count change never changes
which items share a batch, and hence never changes an output byte. A gloo
process group is only created when ``WORLD_SIZE > 1``, and is only used for
the final barrier and the summary counts.
"""
import contextlib
import datetime
import json
import os
import os.path as osp
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
import torch.distributed as dist

from pcm_plugin.utils.fileio import atomic_write_json

# Ranks that finish early wait at the final barrier for the slowest one;
# the default gloo timeout (30 min) is far too short for a large run.
DEFAULT_TIMEOUT_HOURS = 72.0


def dist_env() -> Tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment."""
    try:
        rank = int(os.environ.get('RANK', 0))
        world = int(os.environ.get('WORLD_SIZE', 1))
        local_rank = int(os.environ.get('LOCAL_RANK', rank))
    except ValueError as err:
        raise ValueError(f'RANK/WORLD_SIZE/LOCAL_RANK must be integers: '
                         f'{err}') from err
    if not 0 <= rank < world:
        raise ValueError(f'RANK={rank} is outside WORLD_SIZE={world}')
    return rank, world, local_rank


@contextlib.contextmanager
def process_group(world_size: int,
                  timeout_hours: float = DEFAULT_TIMEOUT_HOURS) -> Iterator:
    """Create a gloo group when ``world_size > 1``; always destroy it."""
    created = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            'gloo', timeout=datetime.timedelta(hours=timeout_hours))
        created = True
    try:
        yield
    finally:
        if created:
            dist.destroy_process_group()


def _group_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _group_active():
        dist.barrier()


def sum_across_ranks(values: Sequence[float]) -> List[float]:
    """Element-wise sum of ``values`` over ranks (identity in one process)."""
    if not _group_active():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)  # (K,)
    dist.all_reduce(tensor)
    return tensor.tolist()


def owned_by_rank(num_units: int, rank: int, world_size: int) -> List[int]:
    """Global unit numbers (batches, shards) that ``rank`` processes.

    Round-robin rather than contiguous blocks: ranks finish together even
    when the tail of the corpus is already done from an earlier run.
    """
    return list(range(rank, num_units, world_size))


def check_or_write_settings(path: str, settings: Dict, *, what: str,
                            fix: str, ignore: Sequence[str] = ()) -> None:
    """Pin a resumable run's settings, or check a previous run's match.

    The first run writes ``path``; a rerun in the same folder (a resume)
    must agree on every key but ``ignore`` (paths that may move), or it
    would mix results of two runs.

    Args:
        path (str): The settings JSON (e.g. ``<out>/extract_config.json``).
        settings (dict): This run's settings.
        what (str): What the folder then holds, for the error.
        fix (str): What to do instead, for the error.
        ignore (Sequence[str]): Keys allowed to differ.

    Raises:
        ValueError: naming every differing key with both values.
    """
    if not osp.isfile(path):
        os.makedirs(osp.dirname(path) or '.', exist_ok=True)
        atomic_write_json(path, settings)  # every rank writes the same bytes
        return
    with open(path, encoding='utf-8') as f:
        old = json.load(f)
    diff = sorted(k for k in set(old) | set(settings)
                  if old.get(k) != settings.get(k) and k not in ignore)
    if diff:
        changes = ', '.join(f'{k}: {old.get(k)!r} -> {settings.get(k)!r}'
                            for k in diff)
        raise ValueError(f'{osp.dirname(path)} holds {what} ({changes}); '
                         f'{fix}')
