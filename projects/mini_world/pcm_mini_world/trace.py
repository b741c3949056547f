"""Follow a mini-world training run epoch by epoch: where does it go wrong?

For every epoch checkpoint of a run, on the world's *real* validation
renders and on a slice of its *synthetic* training set:

* teacher-forced cross-entropy of the references (how well each domain is
  fitted, with the layout the model uses at test time);
* CIDEr of the beam-search captions, with the concept tokens (the official
  test layout), without them (``mode='none'``: the visual pathway alone)
  and with the training layout (``eval_mode='replace'``);
* attribute errors of the captions: the share of colour and shape words
  that name no object of the scene (the scenes are known exactly), and
  what they leave out (:func:`content_recall`).

Used to tell a bug from training dynamics when a seed "collapses"
(docs/benchmarks/mini_world.md tells such a case).
"""
import copy
import json
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np

from pcm_plugin.evaluation.caption_metric import PAPER_SCALE

from .scenes import (
    COL_WORDS,
    COLOURS,
    RELATIONS,
    ROW_WORDS,
    SHAPES,
    SIZE_WORDS,
)
from .world_steps import load_scenes

LAYOUTS = {'append': dict(), 'none': dict(mode='none'),
           'replace': dict(eval_mode='replace')}


def attribute_errors(captions: Sequence[str], scenes: Sequence
                     ) -> Dict[str, float]:
    """Share of colour / shape words in ``captions`` absent from the scene.

    Returns:
        dict: ``colour`` and ``shape``: wrong words / all such words.
    """
    wrong = dict(colour=0, shape=0)
    total = dict(colour=0, shape=0)
    for caption, scene in zip(captions, scenes):
        words = caption.lower().split()
        truth = dict(colour={o.colour for o in scene.objects},
                     shape={o.shape for o in scene.objects})
        for kind, vocab in (('colour', COLOURS), ('shape', SHAPES)):
            for word in words:
                if word.rstrip('s') in vocab or word in vocab:
                    total[kind] += 1
                    base = word if word in vocab else word.rstrip('s')
                    wrong[kind] += base not in truth[kind]
    return {k: wrong[k] / max(total[k], 1) for k in wrong}


# Words that name a background in the captions' phrases (scenes.py); the
# night phrases say "night sky", so a caption naming night names no sky.
BACKGROUND_CUES = {'snow': ('snow', 'snowy'),
                   'sand': ('sand', 'sandy', 'beach'),
                   'sky': ('sky', ), 'night': ('night', 'dark'),
                   'grass': ('grass', 'grassy', 'lawn')}
SPATIAL_WORDS = frozenset(
    w for phrases in RELATIONS.values() for p in phrases for w in p.split()
    if w not in ('to', 'the', 'of', 'on')).union(ROW_WORDS, COL_WORDS)
SIZE_CUES = frozenset(w for ws in SIZE_WORDS.values() for w in ws if w)


def backgrounds_named(caption: str) -> set:
    """The backgrounds a caption names (:data:`BACKGROUND_CUES`)."""
    words = set(caption.lower().split())
    named = {b for b, cues in BACKGROUND_CUES.items() if words & set(cues)}
    return named - {'sky'} if 'night' in named else named


def content_recall(captions: Sequence[str], scenes: Sequence
                   ) -> Dict[str, float]:
    """What the captions say of their scenes, and what they leave out.

    Returns:
        dict: ``shape_recall`` / ``colour_recall``: share of each scene's
        distinct shapes / colours the caption names; ``background_recall``:
        share of captions naming the scene's background, and
        ``background_wrong``: naming another one; ``spatial_share`` /
        ``size_share``: share of captions with a position or relation
        word / a size word.
    """
    sums = dict.fromkeys(('shape_recall', 'colour_recall',
                          'background_recall', 'background_wrong',
                          'spatial_share', 'size_share'), 0.0)
    for caption, scene in zip(captions, scenes):
        words = caption.lower().split()
        named = {w.rstrip('s') if w.rstrip('s') in SHAPES else w
                 for w in words}
        shapes = {o.shape for o in scene.objects}
        colours = {o.colour for o in scene.objects}
        backgrounds = backgrounds_named(caption)
        sums['shape_recall'] += len(shapes & named) / len(shapes)
        sums['colour_recall'] += len(colours & named) / len(colours)
        sums['background_recall'] += scene.background in backgrounds
        sums['background_wrong'] += bool(backgrounds - {scene.background})
        sums['spatial_share'] += bool(SPATIAL_WORDS.intersection(words))
        sums['size_share'] += bool(SIZE_CUES.intersection(words))
    return {k: v / max(len(captions), 1) for k, v in sums.items()}


def _model(cfg, checkpoint: str, layout: Dict):
    from mmengine.runner import load_checkpoint

    from pcm_plugin.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.mixup.update(layout)
    model = MODELS.build(model_cfg)
    # A Base checkpoint has no text projection for a mix-up layout.
    load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                    logger='silent')
    return model.eval()


def _batches(cfg, loader_key: str, limit: int):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmpretrain')  # where pcm_plugin registers
    loader_cfg = copy.deepcopy(cfg[loader_key])
    loader_cfg.batch_size = 100
    loader_cfg.sampler = dict(type='DefaultSampler', shuffle=False)
    seen = 0
    for batch in Runner.build_dataloader(loader_cfg):
        yield batch
        seen += len(batch['data_samples'])
        if seen >= limit:
            return


def teacher_forced_loss(model, cfg, loader_key: str, limit: int,
                        refs: Dict[str, List[str]] = None) -> float:
    """Mean per-word CE of each sample's caption (training samples) or
    first reference (``refs``: image id -> references, for eval sets)."""
    import torch
    from torch.nn import functional as F

    from pcm_plugin.models.tokenizer import encode_captions
    total, words = 0.0, 0
    with torch.no_grad():
        for batch in _batches(cfg, loader_key, limit):
            data = model.data_preprocessor(batch, False)
            memory, mask = model.encode(data['inputs'])
            captions = [s.get('gt_caption') or refs[str(s.image_id)][0]
                        for s in data['data_samples']]
            input_ids, targets, input_mask = encode_captions(
                model.tokenizer, captions, max_len=model.max_len)  # (B, T)
            logits = model.decoder(input_ids, memory, mask, input_mask)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                   ignore_index=-100, reduction='sum')
            total += float(loss)
            words += int((targets != -100).sum())
    return total / max(words, 1)


def captions_and_ids(model, cfg, limit: int):
    out, ids = [], []
    for batch in _batches(cfg, 'val_dataloader', limit):
        data = model.data_preprocessor(batch, False)
        out += model.generate(data['inputs'])
        ids += [str(s.get('image_id')) for s in data['data_samples']]
    return out, ids


def trace_run(cfg, work_dir: str, *, epochs: Sequence[int],
              world_root: str, num_val: int = 200,
              num_train: int = 500) -> List[Dict]:
    """One row per epoch checkpoint ``<work_dir>/epoch_<e>.pth``.

    Args:
        cfg (Config): The run's config (pointed at the world).
        work_dir (str): The run's work directory.
        epochs (list[int]): Epochs whose checkpoints exist.
        world_root (str): The world (for the validation scenes).
        num_val (int): Real validation renders used.
        num_train (int): Synthetic training samples for the loss.

    Returns:
        list[dict]: ``epoch``, ``loss_real``, ``loss_synthetic``,
        ``CIDEr_<layout>`` (×100, the metric's :data:`PAPER_SCALE`; a
        ``trace.json`` without ``metric_scale`` holds ×1) and
        ``<kind>_errors_<layout>`` per layout.
    """
    from pycocoevalcap.cider.cider import Cider
    with open(cfg.val_dataloader.dataset.ann_file) as f:
        refs = {str(e['image_id']): e['captions']
                for e in json.load(f)['data_list']}
    scenes = load_scenes(osp.join(world_root, 'corpus'), 'val')
    rows = []
    for epoch in epochs:
        checkpoint = osp.join(work_dir, f'epoch_{epoch}.pth')
        row = dict(epoch=epoch)
        for name, layout in LAYOUTS.items():
            if name != 'append' and cfg.model.mixup.get('mode') == 'none':
                continue
            model = _model(cfg, checkpoint, layout)
            if name == 'append':
                row['loss_real'] = teacher_forced_loss(
                    model, cfg, 'val_dataloader', num_val, refs)
                row['loss_synthetic'] = teacher_forced_loss(
                    model, cfg, 'train_dataloader', num_train)
            captions, ids = captions_and_ids(model, cfg, num_val)
            gts = {i: refs[i] for i in ids}
            preds = {i: [c] for i, c in zip(ids, captions)}
            row[f'CIDEr_{name}'] = float(
                Cider().compute_score(gts, preds)[0]) * PAPER_SCALE
            errors = attribute_errors(captions, [scenes[i] for i in ids])
            for kind, value in errors.items():
                row[f'{kind}_errors_{name}'] = value
        rows.append(row)
    return rows


def summarize_trace(rows: List[Dict]) -> str:
    """A markdown table of :func:`trace_run` rows."""
    keys = [k for k in rows[0] if k != 'epoch']
    lines = ['| epoch | ' + ' | '.join(keys) + ' |',
             '|' + ' --- |' * (1 + len(keys))]
    for row in rows:
        lines.append(f'| {row["epoch"]} | ' + ' | '.join(
            f'{row[k]:.3f}' if k in row else '–' for k in keys) + ' |')
    return '\n'.join(lines)


def mean_rows(rows: List[Dict]) -> Dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def test_split_analysis(cfg, checkpoint: str, world_root: str, *,
                        layout: str = 'append', bootstrap: int = 50,
                        seed: int = 0) -> Dict:
    """One checkpoint on the world's real test renders, taken apart.

    Args:
        cfg (Config): The run's config (pointed at the world).
        checkpoint (str): The checkpoint.
        world_root (str): The world (test scenes and references).
        layout (str): A key of :data:`LAYOUTS`.
        bootstrap (int): Test-set resamples for the sampling noise.
        seed (int): Seed of the resampling.

    Returns:
        dict: ``CIDEr`` (×100, PTB-tokenized as the metric; seed_noise
        rows were ×100 before they carried ``metric_scale``), its
        ``bootstrap_std`` over resampled test sets (the part of a model's
        score that is test-set sampling), ``colour_errors`` /
        ``shape_errors`` (:func:`attribute_errors`), the most frequent
        caption opening and its share, the mean caption length, and
        what the captions leave out (:func:`content_recall`).
    """
    import collections

    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    cfg = copy.deepcopy(cfg)
    cfg.val_dataloader = copy.deepcopy(cfg.test_dataloader)
    with open(cfg.test_dataloader.dataset.ann_file) as f:
        refs = {str(e['image_id']): e['captions']
                for e in json.load(f)['data_list']}
    scenes = load_scenes(osp.join(world_root, 'corpus'), 'test')
    model = _model(cfg, checkpoint, LAYOUTS[layout])
    captions, ids = captions_and_ids(model, cfg, len(refs))
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [dict(caption=c) for c in refs[i]]
                              for i in ids})
    res = tokenizer.tokenize({i: [dict(caption=c)]
                              for i, c in zip(ids, captions)})
    score = Cider().compute_score(gts, res)[0]
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(bootstrap):
        pick = rng.choice(len(ids), len(ids))
        keys = [f'{ids[j]}#{k}' for k, j in enumerate(pick)]
        resampled.append(Cider().compute_score(
            {key: gts[ids[j]] for key, j in zip(keys, pick)},
            {key: res[ids[j]] for key, j in zip(keys, pick)})[0])
    opening, count = collections.Counter(
        ' '.join(c.split()[:2]) for c in captions).most_common(1)[0]
    captioned = [scenes[i] for i in ids]
    errors = attribute_errors(captions, captioned)
    recall = content_recall(captions, captioned)
    return dict(CIDEr=PAPER_SCALE * score, metric_scale=PAPER_SCALE,
                bootstrap_std=(PAPER_SCALE * float(np.std(resampled))
                               if resampled else None),
                colour_errors=errors['colour'], shape_errors=errors['shape'],
                top_opening=opening, top_opening_share=count / len(captions),
                mean_words=float(np.mean([len(c.split()) for c in captions])),
                **recall)
