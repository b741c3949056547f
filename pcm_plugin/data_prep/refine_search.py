"""Steps 1-2 of SynC over a whole pool: chunked, sharded, resumable.

Captions are processed in fixed chunks (the unit of work, of sharding
across torchrun ranks and of resuming). A chunk's ``c x M`` similarity
block is the largest array, so memory is bounded whatever N is. Each rank
saves its running image -> caption neighbours every ``save_every`` seconds
and after its last chunk; a killed run resumes from there and gives the
same bytes as an uninterrupted one (chunks are recomputed exactly, and
neighbours merge in any order to the same result).

The work folder holds ``config.json`` (what the run depends on: a resume
with other inputs or settings is refused), ``chunk-<k>.npz`` per caption
chunk (candidates, cosines, sentence embeddings) and
``columns-rank<r>of<W>.npz`` per rank.
"""
import hashlib
import json
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pcm_plugin.utils.fileio import atomic_path, file_sha256
from pcm_plugin.utils.progress import progress_bar

from . import pair_refinement as sync
from .bad_input import BadInputError
from .refine_pool import Pool
from .sharding import check_or_write_settings, dist_env, owned_by_rank

CONFIG = 'config.json'
MAPPINGS = ('one_to_many', 'one_to_one')
SCORES = ('cycle', 'clip')


@dataclass
class RefineSettings:
    """SynC's knobs (defaults: the paper's) and how the run is cut up.

    Args:
        k (int): K, candidate images per caption. Defaults to 15.
        k_back (int): K_r, captions each image retrieves. Defaults to 2.
        tau (float): Kept fraction of the captions. Defaults to 0.9.
        mapping (str): ``'one_to_many'`` (re-assign: SynC) or
            ``'one_to_one'`` (keep each caption's image; score and filter).
        score (str): ``'cycle'`` (the retrieval score f) or ``'clip'`` (the
            CLIP cosine ``T_i . V_j``): the two scorers SynC compares.
        chunk_size (int): Captions per chunk. Defaults to 1024.
        save_every (float): Seconds between saves of a rank's state.
        skip_bad (bool): Drop and count captions whose image has no or
            non-finite features instead of stopping.
    """
    k: int = 15
    k_back: int = 2
    tau: float = 0.9
    mapping: str = 'one_to_many'
    score: str = 'cycle'
    chunk_size: int = 1024
    save_every: float = 60.0
    skip_bad: bool = False

    def check(self) -> None:
        if self.mapping not in MAPPINGS:
            raise ValueError(f'--mapping {self.mapping!r}: one of {MAPPINGS}')
        if self.score not in SCORES:
            raise ValueError(f'--score {self.score!r}: one of {SCORES}')
        if min(self.k, self.k_back, self.chunk_size) < 1:
            raise ValueError('--k, --k-back and --chunk-size must be >= 1')
        if not 0 < self.tau <= 1:
            raise ValueError(f'--tau {self.tau}: must be in (0, 1]')


def run_digest(ann_file: str, pool: Pool, s: RefineSettings,
               models: Dict[str, str], world: int) -> Dict:
    """What a run's chunks depend on; a resume must match it exactly."""
    ids = hashlib.sha256(json.dumps([pool.image_ids, pool.stores]).encode())
    return dict(format='pcm_plugin.refine/1',
                annotation_sha256=file_sha256(ann_file),
                images_sha256=ids.hexdigest(),
                num_captions=len(pool.entries), k=s.k, k_back=s.k_back,
                chunk_size=s.chunk_size, world_size=world, **models)


def check_or_write_config(work_dir: str, config: Dict) -> None:
    """Start a work folder, or check that it belongs to this run."""
    check_or_write_settings(
        osp.join(work_dir, CONFIG), config,
        what='a refinement of other inputs or settings',
        fix='pass another --work-dir, or the old settings to resume')


def chunk_path(work_dir: str, chunk: int) -> str:
    return osp.join(work_dir, f'chunk-{chunk:06d}.npz')


def save_npz(path: str, **arrays) -> None:
    with atomic_path(path, suffix='.npz') as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: str) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class _RankState:
    """One rank's running image -> caption neighbours and finished chunks."""

    def __init__(self, work_dir: str, rank: int, world: int,
                 num_images: int, k_back: int, num_captions: int):
        self.path = osp.join(work_dir, f'columns-rank{rank}of{world}.npz')
        self.columns = sync.empty_columns(num_images, k_back,
                                          sentinel=num_captions)
        self.done: List[int] = []
        if osp.isfile(self.path):
            data = load_npz(self.path)
            self.columns = (torch.from_numpy(data['values']),
                            torch.from_numpy(data['indices']))
            self.done = data['done'].tolist()

    def save(self) -> None:
        save_npz(self.path, values=self.columns[0].numpy(),
                 indices=self.columns[1].numpy(),
                 done=np.array(self.done, np.int64))


def embed_text(clip, tokenizer, captions: Sequence[str],
               batch_size: int = 256) -> torch.Tensor:
    """(len(captions), d) unit caption embeddings of the CLIP text tower."""
    device = next(clip.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(captions), batch_size):
            tokens = tokenizer(list(captions[start:start + batch_size]))
            out.append(F.normalize(
                clip.encode_text(tokens.to(device)).float(), dim=-1).cpu())
    return torch.cat(out)  # (c, d)


def process_chunk(chunk: int, pool: Pool, s: RefineSettings, clip,
                  tokenizer, sentence_encoder, work_dir: str,
                  seconds: Dict[str, float]):
    """Embed one chunk's captions, find its neighbours, save its rows.

    Returns:
        tuple: the chunk's column neighbours, for :func:`merge_top_k`;
        ``seconds['embed' | 'search']`` grow by the time each part took.
    """
    tic = time.perf_counter()
    start = chunk * s.chunk_size
    rows = range(start, min(start + s.chunk_size, len(pool.entries)))
    # Only this chunk's captions: pool.captions builds all N every call.
    captions = [str(pool.entries[i]['caption']) for i in rows]
    text = embed_text(clip, tokenizer, captions)  # (c, d)
    sentences = sentence_encoder.encode(captions)  # (c, ds)
    for name, emb in (('CLIP text', text), ('sentence', sentences)):
        if not torch.isfinite(emb).all():
            bad = [captions[i] for i in
                   (~torch.isfinite(emb).all(dim=1)).nonzero().flatten()]
            raise BadInputError(f'the {name} encoder gave NaN/Inf for '
                                f'{len(bad)} captions (e.g. {bad[:2]}); '
                                'check the model weights')
    toc = time.perf_counter()
    seconds['embed'] += toc - tic
    cand_sims, cand, columns = sync.chunk_neighbours(
        text, pool.images, k=s.k, k_back=s.k_back, offset=start)
    own = pool.images[pool.own[list(rows)]]  # (c, d)
    save_npz(chunk_path(work_dir, chunk), cand=cand.numpy(),
             cand_sims=cand_sims.numpy(),
             own_sims=(text * own).sum(dim=-1).numpy(),
             sentences=sentences.numpy())
    seconds['search'] += time.perf_counter() - toc
    return columns


def search_neighbours(pool: Pool, s: RefineSettings, *, work_dir: str,
                      load_models, progress: bool = True,
                      on_chunk=None) -> Dict[str, float]:
    """This rank's share of steps 1-2.

    Returns:
        dict: ``chunks`` run now, and the seconds spent embedding captions
        (``embed``) and searching neighbours (``search``, merge included).
    """
    rank, world, _ = dist_env()
    num_chunks = -(-len(pool.entries) // s.chunk_size)
    state = _RankState(work_dir, rank, world, len(pool.image_ids),
                       s.k_back, len(pool.entries))
    pending = [c for c in owned_by_rank(num_chunks, rank, world)
               if c not in state.done]
    seconds = dict(chunks=len(pending), embed=0.0, search=0.0)
    if not pending:
        return seconds
    clip, tokenizer, sentence_encoder = load_models()
    bar = progress_bar(pending, desc='refine: neighbours', unit='chunk',
                       disable=not progress or rank != 0)
    saved = time.time()
    for chunk in bar:
        columns = process_chunk(chunk, pool, s, clip, tokenizer,
                                sentence_encoder, work_dir, seconds)
        tic = time.perf_counter()
        state.columns = sync.merge_top_k(state.columns, columns)
        seconds['search'] += time.perf_counter() - tic
        state.done.append(chunk)
        if time.time() - saved >= s.save_every or chunk == pending[-1]:
            state.save()
            saved = time.time()
        if on_chunk is not None:  # tests: kill the process here
            on_chunk(chunk)
    return seconds


def gather_neighbours(pool: Pool, s: RefineSettings, work_dir: str,
                      world: int) -> Dict[str, torch.Tensor]:
    """All ranks' results, merged: cand/back/scores' inputs for step 3."""
    num_chunks = -(-len(pool.entries) // s.chunk_size)
    back = sync.empty_columns(len(pool.image_ids), s.k_back,
                              sentinel=len(pool.entries))
    for rank in range(world):
        state = _RankState(work_dir, rank, world, len(pool.image_ids),
                           s.k_back, len(pool.entries))
        if sorted(state.done) != owned_by_rank(num_chunks, rank, world):
            raise RuntimeError(f'{state.path}: rank {rank} has not finished '
                               'its chunks; re-run the same command')
        back = sync.merge_top_k(back, state.columns)
    chunks = [load_npz(chunk_path(work_dir, c)) for c in range(num_chunks)]
    out = {k: torch.from_numpy(np.concatenate([c[k] for c in chunks]))
           for k in ('cand', 'cand_sims', 'own_sims', 'sentences')}
    out['back'] = back[1]
    return out
