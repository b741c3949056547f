"""The tool path of feature extraction against the bare image-tower forward
and against DataLoader workers.

The tool path (:func:`~pcm_plugin.data_prep.extraction.extract_features`,
decoding in DataLoader workers, writing a store) at each worker count, its
fixed start-up (the same call on a finished store: model load, checkpoint
checksum, nothing to extract) and the bare image-tower forward
(``model.encode_image`` of the same model on tensors decoded beforehand,
same batch size) are timed interleaved (:func:`.perf.timed_interleaved`),
so load from other work on the machine hits them alike; one more tool call
runs under cProfile to show where its time goes
(:mod:`.extraction_profile`).
"""
import itertools
import os
import os.path as osp
import shutil
from typing import Callable, Dict, Sequence

import torch

from .extraction_profile import profile_breakdown
from .perf import synchronize, timed_interleaved

COCO_SYNTHETIC_IMAGES = 542_401  # docs/method.md §2.1 (MSCOCO-SD)


def decoded_images(ann: str, image_dir: str, preprocess) -> torch.Tensor:
    """Every image of ``ann`` decoded and preprocessed as the tool does.

    Returns:
        Tensor: (B, 3, I, I) float32, B being the images of ``ann``.
    """
    from pcm_plugin.clip.image_io import ImageListDataset
    from pcm_plugin.data_prep.extraction import load_items
    items = load_items(ann, image_dir)
    dataset = ImageListDataset(candidates=[i['paths'] for i in items],
                               transform=preprocess)
    return torch.stack([dataset[k][1] for k in range(len(dataset))])


def bare_forward_fn(model, images: torch.Tensor,
                    batch_size: int) -> Callable[[], None]:
    """The image tower alone: ``model.encode_image`` over ``images`` in
    batches of ``batch_size``, no decoding, no hook, nothing kept."""

    @torch.no_grad()
    def forward():
        for start in range(0, len(images), batch_size):
            model.encode_image(images[start:start + batch_size])
        synchronize(images.device)
    return forward


def tool_fn(ann: str, image_dir: str, root: str,
            settings: Dict) -> Callable[[], Dict]:
    """One whole extraction into a fresh store under ``root`` per call
    (the previous one is deleted first, so nothing is resumed)."""
    from pcm_plugin.data_prep.extraction import extract_features
    counter = itertools.count()
    tag = f'w{settings["workers"]}'

    def extract():
        for old in [n for n in os.listdir(root) if n.startswith(tag + '-')]:
            shutil.rmtree(osp.join(root, old))
        out_dir = osp.join(root, f'{tag}-{next(counter)}')
        return extract_features(ann, image_dir=image_dir, out_dir=out_dir,
                                **settings)
    return extract


def tool_vs_bare(ann: str, image_dir: str, root: str, *, num_images: int,
                 workers: Sequence[int], target_workers: int, reps: int,
                 warmup: int, **settings) -> Dict:
    """The tool path at each worker count against the bare forward.

    Args:
        ann (str): Annotation from :func:`write_annotation`.
        image_dir (str): Its image folder.
        root (str): Empty scratch folder for the stores.
        num_images (int): Images in ``ann``.
        workers (Sequence[int]): DataLoader worker counts to time.
        target_workers (int): The worker count of the cProfile run and
            of the headline ratio.
        reps (int): Timed repetitions of every candidate.
        warmup (int): Untimed rounds first.
        **settings: ``ExtractionSettings`` fields, without ``workers``
            (``clip_model``, ``clip_checkpoint``, ``batch_size``,
            ``device``: CUDA where available, as the tool).

    Returns:
        dict: ``times`` (median/IQR seconds and images/s per candidate:
        ``tool_w<k>``, ``tool_startup``, ``bare_forward``), per worker count
        ``ratio_w<k>`` (tool images/s over bare), ``steady_ratio_w<k>``
        (start-up subtracted: the rate over a long run) and
        ``steady_cpu_ratio_w<k>`` (the same on this process's CPU seconds:
        with workers, what the main process adds to the forward once
        decoding runs on other cores), ``profile``, and
        ``coco_extraction_days`` (542,401 images at the steady rate).
    """
    from pcm_plugin.clip.clip_features import load_open_clip
    from pcm_plugin.data_prep.extraction import extract_features
    device = settings.get('device') or (
        'cuda' if torch.cuda.is_available() else 'cpu')  # as the tool
    settings = dict(settings, progress=False, device=device)
    model, preprocess, _ = load_open_clip(
        settings['clip_model'], checkpoint=settings['clip_checkpoint'],
        model_config=settings.get('model_config'), device=device)
    images = decoded_images(ann, image_dir, preprocess)  # (B, 3, I, I)
    images = images.to(device)  # the bare forward copies nothing
    candidates = {f'tool_w{w}': tool_fn(ann, image_dir, root,
                                        dict(settings, workers=w))
                  for w in workers}
    # A finished store: the same call loads, checks and extracts nothing.
    finished = osp.join(root, 'finished')
    extract_features(ann, image_dir=image_dir, out_dir=finished,
                     **dict(settings, workers=0))
    candidates['tool_startup'] = _resume_fn(ann, image_dir, finished,
                                            settings)
    candidates['bare_forward'] = bare_forward_fn(
        model, images, settings['batch_size'])
    # CPU seconds of this process too: they do not count the waits for
    # other work on shared cores, nor the decoding done in workers.
    times = timed_interleaved(candidates, warmup=warmup, reps=reps,
                              cpu=True)
    for name, row in times.items():
        if name != 'tool_startup':
            row['images_per_s'] = num_images / row['median_s']
    bare = times['bare_forward']['median_s']
    startup = times['tool_startup']['median_s']
    out = dict(times=times, num_images=num_images, device=device,
               batch_size=settings['batch_size'], workers=list(workers),
               target_workers=target_workers)
    bare_cpu = times['bare_forward']['cpu_median_s']
    startup_cpu = times['tool_startup']['cpu_median_s']
    for w in workers:
        tool = times[f'tool_w{w}']
        out[f'ratio_w{w}'] = bare / tool['median_s']
        out[f'steady_ratio_w{w}'] = bare / max(tool['median_s'] - startup,
                                               1e-9)
        out[f'steady_cpu_ratio_w{w}'] = bare_cpu / max(
            tool['cpu_median_s'] - startup_cpu, 1e-9)
    steady_s = times[f'tool_w{target_workers}']['median_s'] - startup
    rate = num_images / max(steady_s, 1e-9)
    out['coco_extraction_days'] = dict(
        images=COCO_SYNTHETIC_IMAGES, images_per_s=rate,
        days=COCO_SYNTHETIC_IMAGES / rate / 86_400,
        formula=f'days = {COCO_SYNTHETIC_IMAGES:,} / {rate:.3g} images/s '
        '/ 86,400 (one process on this machine)')
    profiled = tool_fn(ann, image_dir, root,
                       dict(settings, workers=target_workers))
    out['profile'] = profile_breakdown(profiled, bare_s=bare)
    return out


def _resume_fn(ann: str, image_dir: str, out_dir: str,
               settings: Dict) -> Callable[[], Dict]:
    """The tool on a finished store: its fixed start-up only."""
    from pcm_plugin.data_prep.extraction import extract_features

    def resume():
        summary = extract_features(ann, image_dir=image_dir,
                                   out_dir=out_dir,
                                   **dict(settings, workers=0))
        if summary['extracted']:  # it must find nothing left to do
            raise RuntimeError(f'{out_dir}: the finished store was '
                               f'extended ({summary})')
        return summary
    return resume
