"""A small CLIP for the mini world, trained with open_clip's own code.

The model is an ordinary open_clip ``CLIP`` built from a custom config
(64x64 images, 8x8 patches -> an 8x8 grid of 64 tokens like the pooled
ViT-L/14 grid, width 64, 4 layers; a 2-layer text tower; 64-d joint
space) and trained with ``open_clip.loss.ClipLoss`` on *real* renders of
random scenes and their captions, after a short supervised pretraining of
the image tower on shapes (:func:`pretrain_image_tower` says why). It is
saved as an fp16 state dict next to its model-config JSON, so::

    open_clip.add_model_config('pcm-mini-clip.json')
    model = open_clip.create_model('pcm-mini-clip',
                                   pretrained='pcm-mini-clip.pt')

loads it, and feature extraction, the frozen PCM head, concept banks and
CLIP scores run exactly the code they run with real CLIP.

The committed checkpoint (``pcm_plugin/resources/mini_clip``) is
reproduced by ``python tools/mini_world/train_mini_clip.py`` (the defaults
of :func:`train_mini_clip`).
"""
import json
import os
import os.path as osp
import time
from dataclasses import replace
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFilter

from .render import render_real, render_synthetic
from .scenes import (BACKGROUNDS, COLOURS, SHAPES, Scene, describe,
                     generate_split, sample_scene, scene_rng,
                     short_description)

MINI_CLIP_NAME = 'pcm-mini-clip'
MINI_CLIP_CONFIG: Dict = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=64, layers=4, width=64, head_width=32,
                    patch_size=8),
    text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=2,
                  layers=2),
)
# Templates used to check concept retrieval (and, by prepare.py, to build
# the world's concept bank): phrasings the mini CLIP has seen.
GROUP_VARIANTS = ('base', 'shapes', 'shapes', 'colours')
CONCEPT_TEMPLATES = ('a photo of a {}.', 'a {}.', 'a photo of the {}.')


def committed_dir() -> str:
    """Directory of the committed mini CLIP files."""
    return str(resources.files('pcm_plugin').joinpath(
        'resources/mini_clip'))


def committed_paths() -> Tuple[str, str]:
    """``(config_json, checkpoint)`` of the committed mini CLIP."""
    root = committed_dir()
    return (osp.join(root, f'{MINI_CLIP_NAME}.json'),
            osp.join(root, f'{MINI_CLIP_NAME}.pt'))


def register_config(config_path: str) -> str:
    """Register a model-config JSON with open_clip; return the model name.

    Args:
        config_path (str): ``<name>.json``; open_clip names the model after
            the file stem.

    Returns:
        str: The model name.
    """
    import open_clip
    if not osp.isfile(config_path):
        raise FileNotFoundError(
            f'mini CLIP config {config_path} not found; train one with '
            '`python tools/mini_world/train_mini_clip.py`')
    open_clip.add_model_config(config_path)
    return osp.splitext(osp.basename(config_path))[0]


def load_mini_clip(config_path: Optional[str] = None,
                   checkpoint: Optional[str] = None):
    """Load a mini CLIP through open_clip (eval mode, CPU).

    Args:
        config_path (str, optional): Model-config JSON; the committed one
            when None.
        checkpoint (str, optional): Weights; the committed ones when None.

    Returns:
        tuple: ``(model, preprocess, tokenizer, name)``.
    """
    import open_clip
    default_cfg, default_ckpt = committed_paths()
    config_path = config_path or default_cfg
    checkpoint = checkpoint or default_ckpt
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'mini CLIP checkpoint {checkpoint} not found; train one with '
            '`python tools/mini_world/train_mini_clip.py`')
    name = register_config(config_path)
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=checkpoint)
    return model.eval(), preprocess, open_clip.get_tokenizer(name), name


# ------------------------------------------------------------------ data
def images_to_tensor(images: Sequence[np.ndarray]):
    """uint8 (H, W, 3) images -> CLIP-normalised (B, 3, H, W) float tensor.

    Equal to open_clip's eval preprocess for images already at the model's
    resolution (its resize and centre crop are then the identity).
    """
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    batch = torch.from_numpy(np.stack(images)).float() / 255.0  # (B, H, W, 3)
    batch = batch.permute(0, 3, 1, 2)  # (B, 3, H, W)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def photometric_augment(image: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Generic camera-like noise (robustness, as web photos give CLIP)."""
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out = out * rng.uniform(0.9, 1.1, 3) + rng.uniform(-15, 15)
    if rng.random() < 0.3:
        pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
        out = np.asarray(pil.filter(ImageFilter.GaussianBlur(
            rng.uniform(0.3, 0.8))), np.float32)
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(1, 6), out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _variant(scene: Scene, rng: np.random.Generator, kind: str) -> Scene:
    """The same layout with every shape (or colour) redrawn."""
    objects = []
    for obj in scene.objects:
        if kind == 'shapes':
            obj = replace(obj, shape=str(rng.choice(SHAPES)))
        elif kind == 'colours':
            obj = replace(obj, colour=str(rng.choice(list(COLOURS))))
        objects.append(obj)
    return Scene(background=scene.background, objects=objects)


def training_batch(step: int, batch_size: int, seed: int,
                   short_prob: float = 0.25
                   ) -> Tuple[List[np.ndarray], List[str]]:
    """Images and captions of one mini CLIP training step.

    The batch is made of groups of :data:`GROUP_VARIANTS` scenes sharing a
    layout and background and differing in their shapes or colours: hard
    negatives that make the contrastive loss learn shapes (colours and
    backgrounds alone separate random scenes). Scenes come from their own
    stream, disjoint from the corpus splits, and are drawn by the real
    renderer with photometric noise. A caption is a full description or,
    with probability ``short_prob``, a partial one.
    """
    images, texts = [], []
    for group in range(batch_size // len(GROUP_VARIANTS)):
        rng = scene_rng(seed, 'clip', step * batch_size + group)
        base = sample_scene(rng)
        for kind in GROUP_VARIANTS:
            scene = base if kind == 'base' else _variant(base, rng, kind)
            images.append(photometric_augment(render_real(scene), rng))
            texts.append(short_description(scene, rng)
                         if rng.random() < short_prob
                         else describe(scene, rng))
    return images, texts


# ----------------------------------------------------------------- train
def pretrain_image_tower(model, *, steps: int, batch_size: int, lr: float,
                         seed: int, progress: bool) -> Dict[str, List]:
    """Supervised pretraining of the image tower (its head is discarded).

    A ViT this small learns colours and backgrounds from a contrastive loss
    within a few hundred steps but shapes not even after thousands
    (measured: shape top-1 at chance after 4000 ClipLoss steps), far
    beyond the CPU budget; real CLIPs see vastly more data. So the image
    tower is first taught the shape of one-object scenes (a linear head on
    the image embedding, cross-entropy, constant learning rate: shape
    learning takes off late and a decaying rate stalls it; adding colour
    and background terms slowed it too), as image towers are often
    initialised from a classifier. The CLIP phase that follows uses
    ``ClipLoss`` only.

    Returns:
        dict: ``loss`` and batch shape ``accuracy`` of every step.
    """
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm
    head = torch.nn.Linear(model.visual.proj.shape[1], len(SHAPES))
    params = list(model.visual.parameters()) + list(head.parameters())
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    log: Dict[str, List] = dict(loss=[], accuracy=[])
    bar = tqdm(range(steps), desc='image tower pretraining',
               disable=not progress)
    for step in bar:
        for group in optim.param_groups:
            group['lr'] = lr * min(1.0, (step + 1) / 50)
        labels, images = [], []
        for i in range(batch_size):
            rng = scene_rng(seed, 'clip_pretrain', step * batch_size + i)
            scene = sample_scene(rng, num_objects=1)
            labels.append(SHAPES.index(scene.objects[0].shape))
            images.append(photometric_augment(render_real(scene), rng))
        logits = head(model.encode_image(images_to_tensor(images)))
        target = torch.tensor(labels)
        loss = F.cross_entropy(logits, target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        log['loss'].append(float(loss.detach()))
        log['accuracy'].append(float((logits.argmax(1) == target)
                                     .float().mean()))
        bar.set_postfix(shape_acc=f'{np.mean(log["accuracy"][-50:]):.2f}')
    return log


def _curve(losses: Sequence[float], every: int = 100) -> List[float]:
    return [round(float(np.mean(losses[i:i + every])), 4)
            for i in range(0, len(losses), every)]


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + np.cos(np.pi * progress))


def round_to_fp16_(model) -> None:
    """Round every parameter to fp16 precision in place.

    The checkpoint is stored in fp16 to stay small; rounding first makes
    the saved model *exactly* the evaluated one.
    """
    import torch
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def save_mini_clip(model, out_dir: str, name: str = MINI_CLIP_NAME,
                   config: Optional[Dict] = None) -> Tuple[str, str]:
    """Write ``<name>.json`` (model config) and ``<name>.pt`` (fp16 state).

    Returns:
        tuple[str, str]: The config and checkpoint paths.
    """
    import torch
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = osp.join(out_dir, f'{name}.json')
    ckpt_path = osp.join(out_dir, f'{name}.pt')
    with open(cfg_path, 'w', encoding='utf-8') as f:
        json.dump(config or MINI_CLIP_CONFIG, f, indent=1)
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    tmp = f'{ckpt_path}.tmp{os.getpid()}'
    torch.save(state, tmp)
    os.replace(tmp, ckpt_path)
    return cfg_path, ckpt_path


def train_mini_clip(out_dir: str, *, steps: int = 3000,
                    pretrain_steps: int = 2500,
                    batch_size: int = 64, lr: float = 1e-3,
                    weight_decay: float = 0.1, warmup: int = 50,
                    seed: int = 0, threads: int = 2,
                    eval_scenes: int = 500, eval_every: int = 0,
                    progress: bool = True) -> Dict:
    """Train the mini CLIP from scratch and save it to ``out_dir``.

    Args:
        out_dir (str): Output directory (config JSON, ``.pt``, metrics).
        steps (int): ClipLoss steps. Defaults to 3000.
        pretrain_steps (int): Supervised image-tower steps before them
            (:func:`pretrain_image_tower`). Defaults to 2500.
        batch_size (int): Image-caption pairs per step. Defaults to 64.
        lr (float): Peak AdamW learning rate (cosine decay after a linear
            warm-up). Defaults to 1e-3.
        weight_decay (float): AdamW weight decay. Defaults to 0.1.
        warmup (int): Warm-up steps. Defaults to 50.
        seed (int): Seed of initialisation and data. Defaults to 0.
        threads (int): torch CPU threads. Defaults to 2.
        eval_scenes (int): Held-out scenes for the final evaluation.
        eval_every (int): Also evaluate (200 scenes) and save every this
            many steps; 0 = only at the end.
        progress (bool): Show a progress bar.

    Returns:
        dict: Training settings, timings and :func:`evaluate_mini_clip`.
    """
    import open_clip
    import torch
    from tqdm import tqdm
    torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = osp.join(out_dir, f'{MINI_CLIP_NAME}.json')
    with open(cfg_path, 'w', encoding='utf-8') as f:
        json.dump(MINI_CLIP_CONFIG, f, indent=1)
    name = register_config(cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(name)
    start = time.time()
    model.train()
    pretrain_log = pretrain_image_tower(
        model, steps=pretrain_steps, batch_size=batch_size, lr=lr, seed=seed,
        progress=progress)
    loss_fn = open_clip.loss.ClipLoss()
    optim = torch.optim.AdamW(model.parameters(), lr=lr,
                              weight_decay=weight_decay)
    losses, history = [], []
    bar = tqdm(range(steps), desc='mini CLIP', disable=not progress)
    for step in bar:
        for group in optim.param_groups:
            group['lr'] = _lr_at(step, steps, lr, warmup)
        images, captions = training_batch(step, batch_size, seed)
        images = images_to_tensor(images)
        texts = tokenizer(captions)
        image_feats, text_feats, logit_scale = model(images, texts)[:3]
        loss = loss_fn(image_feats, text_feats, logit_scale)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():  # as in open_clip's trainer
            model.logit_scale.clamp_(0, np.log(100))
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f'{np.mean(losses[-20:]):.3f}')
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            model.eval()
            save_mini_clip(model, out_dir)
            quick = evaluate_mini_clip(model, tokenizer, num_scenes=200,
                                       seed=seed, domains=('real',))
            history.append(dict(step=step + 1, loss=losses[-1],
                                seconds=round(time.time() - start, 1),
                                eval=quick))
            with open(osp.join(out_dir, 'history.json'), 'w') as f:
                json.dump(history, f, indent=1)
            model.train()
    train_seconds = time.time() - start
    model.eval()
    round_to_fp16_(model)
    cfg_path, ckpt_path = save_mini_clip(model, out_dir)
    metrics = dict(
        settings=dict(steps=steps, pretrain_steps=pretrain_steps,
                      batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, warmup=warmup, seed=seed,
                      threads=threads, config=MINI_CLIP_CONFIG),
        train_seconds=round(train_seconds, 1), history=history,
        pretrain_loss_curve=_curve(pretrain_log['loss']),
        pretrain_shape_accuracy=_curve(pretrain_log['accuracy']),
        loss_curve=_curve(losses),
        eval=evaluate_mini_clip(model, tokenizer, num_scenes=eval_scenes,
                                seed=seed))
    with open(osp.join(out_dir, f'{MINI_CLIP_NAME}.metrics.json'), 'w',
              encoding='utf-8') as f:
        json.dump(metrics, f, indent=1)
    return metrics


# ------------------------------------------------------------------ eval
def encode_texts(model, tokenizer, texts: Sequence[str],
                 batch_size: int = 256):
    """Unit CLIP text embeddings (N, D)."""
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            emb = model.encode_text(tokenizer(list(texts[i:i + batch_size])))
            out.append(emb / emb.norm(dim=-1, keepdim=True))
    return torch.cat(out)


def encode_images(model, images: Sequence[np.ndarray],
                  batch_size: int = 256):
    """Unit CLIP image embeddings (N, D)."""
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            batch = images_to_tensor(images[i:i + batch_size])
            emb = model.encode_image(batch)  # (b, D)
            out.append(emb / emb.norm(dim=-1, keepdim=True))
    return torch.cat(out)


def concept_embeddings(model, tokenizer, words: Sequence[str],
                       templates: Sequence[str] = CONCEPT_TEMPLATES):
    """Prompt-ensemble unit embeddings (C, D) of concept words."""
    total = 0
    for template in templates:
        total = total + encode_texts(model, tokenizer,
                                     [template.format(w) for w in words])
    mean = total / len(templates)
    return mean / mean.norm(dim=-1, keepdim=True)


def _concept_hits(image_emb, scenes, model, tokenizer) -> Dict[str, float]:
    """Top-1 shape/colour/background and top-5 recall over all words."""
    groups = dict(shape=list(SHAPES), colour=list(COLOURS),
                  background=list(BACKGROUNDS))
    words: List[str] = sum(groups.values(), [])
    sims = image_emb @ concept_embeddings(model, tokenizer, words).T
    result, offset = {}, 0
    truth = [dict(shape={o.shape for o in s.objects},
                  colour={o.colour for o in s.objects},
                  background={s.background}) for s in scenes]
    for group, group_words in groups.items():
        best = sims[:, offset:offset + len(group_words)].argmax(1)
        result[f'top1_{group}'] = float(np.mean(
            [group_words[int(b)] in t[group] for b, t in zip(best, truth)]))
        offset += len(group_words)
    top5 = sims.topk(5, dim=1).indices
    recall = []
    for row, t in zip(top5, truth):
        true_words = set().union(*t.values())
        got = {words[int(i)] for i in row}
        recall.append(len(got & true_words) / min(5, len(true_words)))
    result['top5_recall'] = float(np.mean(recall))
    return result


def evaluate_mini_clip(model, tokenizer, *, num_scenes: int = 500,
                       seed: int = 0,
                       domains: Sequence[str] = ('real', 'synthetic')
                       ) -> Dict:
    """Is the mini CLIP useful? Retrieval and concept checks.

    On held-out scenes (their own RNG stream): image->text top-1/top-5
    retrieval among the scenes' captions, for real and synthetic-style
    renders; concept retrieval of the true shape, colour and background
    words (single-object scenes for the shape/colour top-1).

    Returns:
        dict: Accuracies in [0, 1].
    """
    import torch
    scenes, captions = generate_split('clip_eval', num_scenes, seed=seed)
    text_emb = encode_texts(model, tokenizer, [c[0] for c in captions])
    result = {}
    for domain in domains:
        if domain == 'real':
            images = [render_real(s) for s in scenes]
        else:
            images = [render_synthetic(s, rng=np.random.default_rng(
                [seed, 99, i])) for i, s in enumerate(scenes)]
        image_emb = encode_images(model, images)
        sims = image_emb @ text_emb.T  # (N, N)
        target = torch.arange(len(scenes))
        ranks = (sims > sims[target, target][:, None]).sum(1)
        result[domain] = dict(
            i2t_top1=float((ranks == 0).float().mean()),
            i2t_top5=float((ranks < 5).float().mean()),
            matched_cos_mean=float(sims.diagonal().mean()),
            unmatched_cos_mean=float((sims.sum() - sims.diagonal().sum())
                                     / (len(scenes) ** 2 - len(scenes))))
        single = [i for i, s in enumerate(scenes) if len(s.objects) == 1]
        result[domain]['concepts_single_object'] = _concept_hits(
            image_emb[single], [scenes[i] for i in single], model,
            tokenizer)
        result[domain]['concepts_all'] = _concept_hits(
            image_emb, scenes, model, tokenizer)
    return result
