"""Captions to synthetic images with a local diffusers pipeline
(docs/method.md §2.1).

One image per training caption, written as ``<out>/images/<image_id>.png``
(a flat folder: ext4/XFS index directories by hashed name, so 500k entries
cost nothing per lookup, the extractor finds ``<image_id>.png`` without a
layout rule, and :file:`manifest.json` lists every file so nobody has to
``ls`` the folder).

Reproducibility rules:

* each caption's initial latent comes from its own CPU generator seeded with
  :func:`caption_seed` (``seed`` and ``image_id``), so it never depends on
  the device, the rank or the caption's neighbours;
* batches are fixed chunks of the annotation order (bad captions removed)
  and a rank processes whole global batches (``batch % world == rank``).
  Batched kernels round differently per batch composition (on CPU a batch
  of 4 and four batches of 1 differ by +-1 in a few pixels), so this is
  what makes a 2-process run byte-identical to a 1-process run, and a
  resumed run byte-identical to an uninterrupted one (a half-done batch is
  recomputed whole; only its missing images are written).

Each image is written atomically, then its sha256 is appended to the rank's
``manifest.rank<r>.jsonl``; at the end rank 0 merges all parts into
``manifest.json``. A rerun skips every image whose file exists with the
recorded size (or, with no record, whose PNG verifies).
"""
import hashlib
import json
import logging
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from pcm_plugin.utils.fileio import remove_stale_temp_files
from pcm_plugin.utils.progress import progress_bar

from .bad_input import BadInputPolicy
from .caption_readers import load_json
from .sharding import (
    barrier,
    dist_env,
    owned_by_rank,
    process_group,
    sum_across_ranks,
)
from .synthesis_output import (
    IMAGE_DIR,
    MANIFEST,
    check_settings,
    image_is_done,
    load_records,
    merge_manifest,
    open_part,
    write_image,
)

logger = logging.getLogger(__name__)

DTYPES = ('fp32', 'fp16', 'bf16')
# Where a user without Stable Diffusion weights can still try the path.
NO_WEIGHTS_YET = ('. No weights yet? `make dry-run` (tools/data/dry_run.py) '
                  'runs the whole data path, this tool included, with a '
                  'tiny random pipeline in minutes')


def caption_seed(seed: int, image_id: str) -> int:
    """Generator seed of one caption: a hash of ``seed`` and ``image_id``.

    A hash rather than ``seed + int(image_id)``: ids need not be integers,
    and neighbouring ids of two runs with seeds 0 and 1 never collide.
    """
    digest = hashlib.sha256(f'{seed}:{image_id}'.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'little') & (2 ** 63 - 1)


def check_image_id(image_id: str, where: str) -> str:
    """Return ``image_id`` if it is safe as a file name, else raise."""
    bad = (not image_id or image_id.startswith('.') or '/' in image_id
           or '\\' in image_id or '\0' in image_id)
    if bad:
        raise ValueError(f'{where}: image_id {image_id!r} cannot be a file '
                         'name (empty, leading dot or a path separator)')
    return image_id


def load_captions(ann_file: str, policy: BadInputPolicy
                  ) -> Tuple[List[Tuple[str, str]], List[Dict]]:
    """Read ``(image_id, caption)`` pairs from a train annotation file.

    Structural problems (not a train file, missing or duplicate ids) always
    raise; an empty caption goes through ``policy`` (error or counted skip).

    Returns:
        tuple: the valid pairs in file order, and the skipped entries as
        ``{'image_id', 'reason'}``.
    """
    data = load_json(ann_file)
    entries = data.get('data_list') if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{ann_file}: no `data_list` list; expected a '
                         'train annotation file (docs/architecture.md)')
    pairs, skipped, seen = [], [], set()
    for k, entry in enumerate(entries):
        where = f'{ann_file}: data_list[{k}]'
        if not isinstance(entry, dict) or 'image_id' not in entry:
            raise ValueError(f'{where}: not an object with an `image_id`')
        if 'caption' not in entry:
            raise ValueError(
                f'{where}: no `caption` key; synthesis needs the train '
                'annotation (one entry per caption), not a val/test file')
        image_id = check_image_id(str(entry['image_id']), where)
        if image_id in seen:
            raise ValueError(f'{where}: image_id {image_id!r} appears twice; '
                             'each caption needs its own synthetic image id')
        seen.add(image_id)
        caption = entry['caption']
        if not isinstance(caption, str) or not caption.strip():
            reason = f'empty caption {caption!r}'
            policy.bad('empty caption',
                       f'{where} (image_id {image_id}): {reason}')
            skipped.append(dict(image_id=image_id, reason=reason))
            continue
        pairs.append((image_id, caption))
    return pairs, skipped


def load_pipeline(model_dir: str, *, dtype: str = 'fp32',
                  device: str = 'cpu'):
    """Load a diffusers text-to-image pipeline from a local directory.

    Args:
        model_dir (str): A ``save_pretrained`` / hub snapshot directory
            (Stable Diffusion 1.x/2.x/XL layouts), holding
            ``model_index.json``.
        dtype (str): ``'fp32'``, ``'fp16'`` or ``'bf16'``.
        device (str): Torch device.

    Returns:
        DiffusionPipeline: The pipeline on ``device``, progress bar off.
    """
    if dtype not in DTYPES:
        raise ValueError(f'--dtype {dtype!r}: choose one of {DTYPES}')
    if dtype == 'fp16' and str(device).startswith('cpu'):
        raise ValueError('--dtype fp16 is not supported on CPU (many '
                         'kernels are missing); use fp32 or bf16 there')
    if not osp.isdir(model_dir):
        raise FileNotFoundError(
            f'diffusion model directory {model_dir} not found; pass the '
            'local folder of a Stable Diffusion pipeline (the output of '
            '`save_pretrained` or a downloaded hub snapshot) to --model-dir'
            + NO_WEIGHTS_YET)
    if not osp.isfile(osp.join(model_dir, 'model_index.json')):
        raise FileNotFoundError(
            f'{model_dir} is not a diffusers pipeline: it has no '
            'model_index.json. Point --model-dir at the folder that holds '
            'model_index.json, unet/, vae/, text_encoder/, tokenizer/'
            + NO_WEIGHTS_YET)
    # deferred: diffusers loads only where images are generated
    from diffusers import DiffusionPipeline
    torch_dtype = dict(fp32=torch.float32, fp16=torch.float16,
                       bf16=torch.bfloat16)[dtype]
    try:
        pipe = DiffusionPipeline.from_pretrained(
            model_dir, local_files_only=True, torch_dtype=torch_dtype)
    except (OSError, ValueError, EnvironmentError) as err:
        raise RuntimeError(f'cannot load the diffusers pipeline in '
                           f'{model_dir}: {err}') from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def pipeline_fingerprint(model_dir: str) -> str:
    """Cheap identity of a pipeline folder, independent of its path.

    Hashing gigabytes of weights per rank and run would cost minutes; the
    JSON files plus each weight file's size, first and last MiB tell
    models (also fine-tunes of one architecture) apart.
    """
    chunk = 1 << 20
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(model_dir):
        # Sorted, hidden folders (.cache, .git) pruned: a stable walk.
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(files):
            path = osp.join(folder, name)
            digest.update(osp.relpath(path, model_dir).encode('utf-8'))
            size = osp.getsize(path)
            digest.update(str(size).encode('ascii'))
            with open(path, 'rb') as f:
                if name.endswith('.json') or size <= 2 * chunk:
                    digest.update(f.read())
                    continue
                digest.update(f.read(chunk))
                f.seek(-chunk, os.SEEK_END)
                digest.update(f.read(chunk))
    return digest.hexdigest()


def default_image_size(pipe) -> Tuple[int, int]:
    """``(height, width)`` the pipeline generates by default."""
    sample = pipe.unet.config.sample_size
    scale = getattr(pipe, 'vae_scale_factor', 8)
    height, width = (sample, sample) if isinstance(sample, int) else sample
    return height * scale, width * scale


def parse_size(size: Optional[str]) -> Optional[Tuple[int, int]]:
    """``'512'`` -> (512, 512); ``'768x512'`` (WxH) -> (512, 768)."""
    if size in (None, ''):
        return None
    parts = str(size).lower().split('x')
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise ValueError(f'--size {size!r}: give N or WxH, e.g. 512 or '
                         '768x512')
    width, height = int(parts[0]), int(parts[-1])
    if width % 8 or height % 8:
        raise ValueError(f'--size {size!r}: sides must be multiples of 8')
    return height, width


def _generate(pipe, prompts: Sequence[str], seeds: Sequence[int], *,
              steps: int, guidance: float, size: Tuple[int, int]):
    """Run the pipeline on one batch; return PIL images and NSFW flags."""
    generators = [torch.Generator('cpu').manual_seed(s) for s in seeds]
    with torch.inference_mode():
        out = pipe(prompt=list(prompts), num_inference_steps=steps,
                   guidance_scale=guidance, height=size[0], width=size[1],
                   generator=generators, output_type='pil')
    flags = getattr(out, 'nsfw_content_detected', None)
    return out.images, flags or [None] * len(prompts)


def synthesize(ann_file: str, *, model_dir: str, out_dir: str,
               steps: int = 50, guidance: float = 7.5,
               size: Optional[str] = None, seed: int = 0,
               dtype: str = 'fp32', batch_size: int = 1,
               device: Optional[str] = None, skip_bad: bool = False,
               limit: Optional[int] = None, verify_existing: bool = False,
               progress: bool = True) -> Dict:
    """Generate the missing images of ``ann_file`` for this rank.

    Args:
        ann_file (str): Train annotation (``image_id`` + ``caption``).
        model_dir (str): Local diffusers pipeline directory.
        out_dir (str): Output root (``images/``, manifests).
        steps (int): Denoising steps.
        guidance (float): Classifier-free guidance scale.
        size (str, optional): ``'N'`` or ``'WxH'``; the pipeline's default
            resolution when None.
        seed (int): Base seed of :func:`caption_seed`.
        dtype (str): Pipeline precision (fp32/fp16/bf16).
        batch_size (int): Captions per pipeline call (part of the batch
            plan: keep it fixed across reruns for byte-identical images).
        device (str, optional): Torch device; ``cuda:<LOCAL_RANK>`` when
            CUDA exists, else CPU.
        skip_bad (bool): Count and skip empty captions instead of failing.
        limit (int, optional): Only the first ``limit`` valid captions.
        verify_existing (bool): Check existing files' sha256, not size.
        progress (bool): A progress bar on rank 0.

    Returns:
        dict: Summary summed over ranks (``generated``,
        ``skipped_existing``, ``skipped_bad``, ``seconds``, ...).
    """
    start = time.time()
    rank, world, local_rank = dist_env()
    if batch_size < 1:
        raise ValueError(f'--batch-size must be >= 1, got {batch_size}')
    if limit is not None and limit < 0:
        raise ValueError(f'--limit must be >= 0, got {limit}')
    if device is None:
        device = (f'cuda:{local_rank}' if torch.cuda.is_available()
                  else 'cpu')
    elif device == 'cuda' and world > 1:
        device = f'cuda:{local_rank}'
    policy = BadInputPolicy(skip_bad=skip_bad)
    pairs, bad = load_captions(ann_file, policy)
    pipe = load_pipeline(model_dir, dtype=dtype, device=device)
    hw = parse_size(size) or default_image_size(pipe)
    settings = dict(model_dir=osp.realpath(model_dir),
                    model_fingerprint=pipeline_fingerprint(model_dir),
                    pipeline=type(pipe).__name__, steps=int(steps),
                    guidance=float(guidance), height=hw[0], width=hw[1],
                    seed=int(seed), dtype=dtype)
    image_dir = osp.join(out_dir, IMAGE_DIR)
    os.makedirs(image_dir, exist_ok=True)
    check_settings(out_dir, settings)
    records = load_records(out_dir)
    num_todo = len(pairs) if limit is None else min(limit, len(pairs))
    batches = [list(range(i, min(i + batch_size, len(pairs))))
               for i in range(0, num_todo, batch_size)]
    mine = [batches[b] for b in owned_by_rank(len(batches), rank, world)]
    removed = len(remove_stale_temp_files(
        image_dir, [f'{pairs[i][0]}.png' for batch in mine for i in batch]))
    logger.info('rank %d/%d: %d of %d batches (%d captions, %d skipped as '
                'bad); %d stale temp files removed', rank, world, len(mine),
                len(batches), len(pairs), len(bad), removed)

    with process_group(world):
        counts = _run_batches(
            pipe, pairs, mine, num_todo, records, out_dir, rank, settings,
            verify_sha=verify_existing, progress=progress and rank == 0)
        totals = sum_across_ranks(
            [counts['generated'], counts['skipped_existing'],
             counts['recovered'], len(bad) if rank == 0 else 0])
        barrier()  # every part file is complete before the merge
        if rank == 0:
            merge_manifest(out_dir, ann_file, settings, pairs, bad,
                           batch_size=batch_size)
        barrier()
    seconds = time.time() - start
    summary = dict(generated=int(totals[0]), skipped_existing=int(totals[1]),
                   recovered=int(totals[2]), skipped_bad=int(totals[3]),
                   seconds=round(seconds, 2), world_size=world,
                   manifest=osp.join(out_dir, MANIFEST))
    summary['images_per_s'] = round(summary['generated'] / seconds, 3)
    return summary


def _run_batches(pipe, pairs, batches, num_todo, records, out_dir, rank,
                 settings, *, verify_sha, progress) -> Dict:
    """Generate and write this rank's batches; returns its counts."""
    counts = dict(generated=0, skipped_existing=0, recovered=0)
    plan, new_records = [], []
    for batch in batches:
        todo = []
        for i in batch:
            if i >= num_todo:  # beyond --limit: computed, never written
                continue
            done, record = image_is_done(pairs[i][0], out_dir, records,
                                         verify_sha)
            if record is not None:
                record['seed'] = caption_seed(settings['seed'], pairs[i][0])
                new_records.append(record)
                counts['recovered'] += 1
            if done:
                counts['skipped_existing'] += 1
            else:
                todo.append(i)
        if todo:
            plan.append((batch, set(todo)))
    logger.info('rank %d: %d images to generate, %d already done', rank,
                sum(len(t) for _, t in plan), counts['skipped_existing'])
    bar = progress_bar(total=sum(len(t) for _, t in plan),
                       disable=not progress, unit='img',
                       desc=f'synthesize (rank {rank})')
    with open_part(out_dir, rank, settings) as manifest:
        for record in new_records:
            manifest.write(json.dumps(record) + '\n')
        manifest.flush()
        for batch, todo in plan:
            seeds = [caption_seed(settings['seed'], pairs[i][0])
                     for i in batch]
            images, nsfw = _generate(
                pipe, [pairs[i][1] for i in batch], seeds,
                steps=settings['steps'], guidance=settings['guidance'],
                size=(settings['height'], settings['width']))
            for i, image, seed, flag in zip(batch, images, seeds, nsfw):
                if i not in todo:
                    continue
                record = write_image(out_dir, pairs[i][0], image, seed)
                if flag is not None:
                    record['nsfw'] = bool(flag)
                manifest.write(json.dumps(record) + '\n')
                manifest.flush()
                counts['generated'] += 1
                bar.update(1)
    bar.close()
    return counts
