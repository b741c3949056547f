"""SynC re-pairing of a training annotation file (``tools/refine_pairs.py``).

SynC (Kim et al., ACM MM 2025) re-assigns every synthetic caption the best
matching image already in the pool and drops the worst pairs; the algorithm
is :mod:`.pair_refinement`, its input :mod:`.refine_pool`, the chunked and
sharded neighbour search :mod:`.refine_search`. This module scores and
selects (steps 3-4) and writes the result: a new annotation file whose
entries carry the re-assigned image's ``image_id`` **and its feature store**
(``feature_dir``: a record never points at the wrong store), the SynC score
(``sync_score``), the caption's original image (``source_image_id``) and the
pair's CLIP cosine recomputed with the features' own CLIP (``clip_cos``: the
scale the CLIP-weighted loss's alpha expects); plus a report.

Deviations from the reference code, on purpose: the default contrastive
model is the CLIP the training features come from (SynC's code defaults to
SigLIP2), and scores are computed in fp32 and rounded to fp16 precision
instead of computed in fp16 (same ties, any device).
"""
import hashlib
import json
import os
import os.path as osp
import resource
import time
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Sequence

import torch

from pcm_plugin.clip.clip_features import load_open_clip
from pcm_plugin.datasets.feature_store import FeatureStore
from pcm_plugin.utils.fileio import (
    atomic_write_json,
    check_writable_output,
    file_sha256,
)

from . import pair_refinement as sync
from .bad_input import BadInputError
from .refine_pool import Pool, check_pool, load_pool
from .refine_search import (
    RefineSettings,
    check_or_write_config,
    gather_neighbours,
    run_digest,
    search_neighbours,
)
from .sentence_encoder import SentenceEncoder
from .sharding import barrier, dist_env, process_group


def refined_entries(pool: Pool, chosen: Dict[str, torch.Tensor],
                    keep: torch.Tensor) -> List[Dict]:
    """The kept captions' annotation entries, re-pointed at their images.

    What describes the image follows it: ``image_id``, ``feature_dir`` and,
    where entries name image files, ``file_name`` (the new image's).
    """
    files = {}
    for entry in pool.entries:
        files.setdefault(str(entry['image_id']), entry.get('file_name'))
    entries = []
    for i in keep.tolist():
        image = int(chosen['image'][i])
        entry = dict(pool.entries[i])
        entry.update(image_id=pool.image_ids[image],
                     feature_dir=pool.stores[image],
                     clip_cos=float(chosen['clip_cos'][i]),
                     sync_score=float(chosen['score'][i]),
                     source_image_id=str(pool.entries[i]['image_id']))
        if 'file_name' in entry:
            entry['file_name'] = files[entry['image_id']]
        entries.append(entry)
    return entries


def summarize(pool: Pool, chosen: Dict[str, torch.Tensor],
              keep: torch.Tensor) -> Dict:
    """How many captions moved, which images serve them, the scores."""
    image, own = chosen['image'], torch.from_numpy(pool.own)
    moved = image != own  # (N,)
    scores = chosen['score']
    quantiles = torch.quantile(scores, torch.tensor(
        [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])).tolist()
    captions = pool.captions
    return dict(
        captions=len(pool.entries), images=len(pool.image_ids),
        kept=len(keep), moved=int(moved.sum()),
        moved_kept=int(moved[keep].sum()),
        distinct_images_used=len(set(image[keep].tolist())),
        duplicate_captions=len(captions) - len(set(captions)),
        threshold=float(scores[keep].min()) if len(keep) else None,
        score_quantiles=dict(zip(
            ('min', 'p10', 'p25', 'p50', 'p75', 'p90', 'max'), quantiles)),
        skipped=dict(pool.policy.counts))


def folder_digest(folder: str) -> str:
    """Checksum of a model folder's top-level files (config and weights)."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if osp.isfile(path):
            digest.update(f'{name}:{file_sha256(path)}'.encode())
    return digest.hexdigest()


def clip_identity(clip: Dict, feature_dirs: Sequence[str]) -> Dict:
    """The CLIP whose text tower embeds the captions: by default the one
    the stores' features came from (their ``index.json``), checked."""
    meta = FeatureStore(feature_dirs[0]).meta
    clip = dict(clip)
    for key, meta_key in (('model', 'clip_model'),
                          ('checkpoint', 'clip_checkpoint'),
                          ('pretrained', 'pretrained')):
        if not clip.get(key) and not (key == 'pretrained' and
                                      clip.get('checkpoint')):
            clip[key] = meta.get(meta_key)
    if not clip.get('model'):
        raise ValueError(f'{feature_dirs[0]} does not name its CLIP; pass '
                         '--clip-model and --clip-checkpoint')
    sha = clip.get('checkpoint') and file_sha256(clip['checkpoint'])
    if sha and meta.get('checkpoint_sha256') and \
            sha != meta['checkpoint_sha256']:
        raise ValueError(
            f'--clip-checkpoint {clip["checkpoint"]} is not the CLIP the '
            f'features of {feature_dirs[0]} came from '
            f'({meta.get("clip_checkpoint")}): the caption embeddings must '
            'share the image embeddings\' space')
    return dict(clip, sha256=sha)


def model_loader(clip: Dict, sentence_model: str, device: str) -> Callable:
    """Load the CLIP and the sentence encoder only when there is work."""
    def load():
        model, _, tokenizer = load_open_clip(
            clip['model'], checkpoint=clip.get('checkpoint'),
            pretrained=clip.get('pretrained'),
            model_config=clip.get('model_config'),
            cache_dir=clip.get('cache_dir'), device=device)
        return model, tokenizer, SentenceEncoder(sentence_model,
                                                 device=device)
    return load


def refine_pairs(ann_file: str, *, feature_dirs: Sequence[str],
                 out_file: str, sentence_model: str,
                 clip: Optional[Dict] = None, work_dir: Optional[str] = None,
                 device: Optional[str] = None, progress: bool = True,
                 on_chunk: Optional[Callable[[int], None]] = None,
                 **settings) -> Optional[Dict]:
    """Refine ``ann_file``'s pairs; write ``out_file`` and its report.

    Args:
        ann_file (str): Train annotation JSON (``image_id``, ``caption``).
        feature_dirs (Sequence[str]): Feature stores of its images.
        out_file (str): The refined annotation JSON (never ``ann_file``).
        sentence_model (str): Local sentence-transformers model folder.
        clip (dict, optional): ``model``, ``checkpoint`` | ``pretrained``,
            ``model_config``, ``cache_dir`` of the stores' CLIP (defaults
            from the first store's ``index.json``).
        work_dir (str, optional): Resume folder; ``<out_file>.work``.
        device (str, optional): ``cuda:<LOCAL_RANK>`` if CUDA, else CPU.
        progress (bool): A progress bar on rank 0.
        on_chunk (callable, optional): Called after each chunk (tests).
        **settings: :class:`RefineSettings` fields.

    Returns:
        dict | None: The report on rank 0, None on the other ranks.
    """
    s = RefineSettings(**settings)
    s.check()
    start = time.time()
    if osp.realpath(out_file) == osp.realpath(ann_file):
        raise BadInputError(f'--out {out_file} is the input annotation file; '
                            'write the refined pairs to a new file')
    check_writable_output(out_file)
    rank, world, local_rank = dist_env()
    if device is None:
        device = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    pool = load_pool(ann_file, feature_dirs, skip_bad=s.skip_bad)
    check_pool(pool, k=s.k, k_back=s.k_back)
    clip = clip_identity(clip or {}, feature_dirs)
    models = dict(clip_model=clip['model'], clip_sha256=clip['sha256'],
                  clip_pretrained=clip.get('pretrained'),
                  sentence_model_sha256=folder_digest(sentence_model))
    work_dir = work_dir or f'{out_file}.work'
    with process_group(world):
        check_or_write_config(work_dir, run_digest(ann_file, pool, s, models,
                                                   world))
        ran = search_neighbours(
            pool, s, work_dir=work_dir, progress=progress, on_chunk=on_chunk,
            load_models=model_loader(clip, sentence_model, device))
        barrier()  # every rank's neighbours on disk
        report = None
        if rank == 0:
            tic = time.time()
            report = finish(ann_file, out_file, pool, s, work_dir, world)
            report.update(chunks_run_by_rank0=ran.pop('chunks'),
                          seconds_rank0={k: round(v, 2) for k, v in dict(
                              ran, score_and_write=time.time() - tic
                          ).items()},
                          seconds=round(time.time() - start, 2),
                          peak_rss_mib=round(resource.getrusage(
                              resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
            atomic_write_json(report_path(out_file), report)
        barrier()
    return report


def report_path(out_file: str) -> str:
    """``train_refined.json`` -> ``train_refined.report.json``."""
    return f'{osp.splitext(out_file)[0]}.report.json'


def finish(ann_file: str, out_file: str, pool: Pool, s: RefineSettings,
           work_dir: str, world: int) -> Dict:
    """Steps 3-4 on rank 0 and the output files."""
    neigh = gather_neighbours(pool, s, work_dir, world)
    chosen = sync.assign(neigh, torch.from_numpy(pool.own),
                         mapping=s.mapping, score=s.score,
                         chunk_size=s.chunk_size)
    keep = sync.keep_best(chosen['score'], s.tau)
    with open(ann_file, encoding='utf-8') as f:
        metainfo = json.load(f).get('metainfo', {})
    summary = summarize(pool, chosen, keep)
    metainfo = dict(metainfo, refined=dict(
        method='SynC', source=osp.abspath(ann_file),
        settings={k: v for k, v in asdict(s).items()
                  if k not in ('save_every', 'chunk_size')},
        **{k: summary[k] for k in ('captions', 'kept', 'moved_kept',
                                   'threshold')}))
    atomic_write_json(out_file, dict(
        metainfo=metainfo, data_list=refined_entries(pool, chosen, keep)))
    return dict(input=ann_file, output=out_file, world_size=world,
                settings=asdict(s), **summary)
