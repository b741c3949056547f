"""Train the mini CLIP: open_clip's model and ``ClipLoss`` on real renders.

Two phases, both on freshly drawn random scenes (their own RNG streams,
disjoint from the corpus splits) drawn by the *real* renderer with
photometric noise:

1. :func:`pretrain_image_tower`: the image tower learns shapes (why: see
   its docstring);
2. ``open_clip.loss.ClipLoss`` on image-caption batches made of
   hard-negative groups (:func:`training_batch`).

Every step's data is a function of the step number, and the training state
is saved every ``resume_every`` steps to ``<out_dir>/resume.pt``: a killed
run restarted with the same command continues where it stopped.
"""
import json
import os
import os.path as osp
import time
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFilter

from pcm_plugin.clip.clip_features import register_model_config
from pcm_plugin.utils.fileio import atomic_path, file_sha256

from .mini_clip import (
    CONCEPT_TEMPLATES,
    MINI_CLIP_CONFIG,
    MINI_CLIP_NAME,
    images_to_tensor,
    projected_patches,
    round_to_fp16_,
    save_mini_clip,
)
from .mini_clip_dense import WORDS as DENSE_WORDS
from .mini_clip_dense import (
    dense_concept_loss,
    image_concept_loss,
    patch_targets,
    scene_word_sets,
)
from .mini_clip_eval import evaluate_mini_clip
from .render import render_real
from .scenes import (
    COLOURS,
    SHAPES,
    Scene,
    describe,
    sample_scene,
    scene_rng,
    short_description,
)

# A training group: one scene and variants with the same layout.
GROUP_VARIANTS = ('base', 'shapes', 'shapes', 'colours')
RESUME_FILE = 'resume.pt'


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
                   ) -> Tuple[List[np.ndarray], List[str], List[Scene]]:
    """Images, captions and scenes of one ClipLoss step.

    The batch is made of groups of :data:`GROUP_VARIANTS` scenes sharing a
    layout and background and differing in their shapes or colours: hard
    negatives, since colours and backgrounds alone separate random scenes.
    A caption is a full description or, with probability ``short_prob``, a
    partial one (:func:`~.scenes.short_description`).
    """
    images, texts, scenes = [], [], []
    for group in range(batch_size // len(GROUP_VARIANTS)):
        rng = scene_rng(seed, 'clip', step * batch_size + group)
        base = sample_scene(rng)
        for kind in GROUP_VARIANTS:
            scene = base if kind == 'base' else _variant(base, rng, kind)
            images.append(photometric_augment(render_real(scene), rng))
            texts.append(short_description(scene, rng)
                         if rng.random() < short_prob
                         else describe(scene, rng))
            scenes.append(scene)
    return images, texts, scenes


def shape_batch(step: int, batch_size: int, seed: int):
    """One-object images and their shape indices (pretraining data)."""
    import torch
    labels, images = [], []
    for i in range(batch_size):
        rng = scene_rng(seed, 'clip_pretrain', step * batch_size + i)
        scene = sample_scene(rng, num_objects=1)
        labels.append(SHAPES.index(scene.objects[0].shape))
        images.append(photometric_augment(render_real(scene), rng))
    return images_to_tensor(images), torch.tensor(labels)


def _cosine_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + np.cos(np.pi * progress))


def _curve(values: Sequence[float], every: int = 100) -> List[float]:
    return [round(float(np.mean(values[i:i + every])), 4)
            for i in range(0, len(values), every)]


class ResumeFile:
    """Training state saved every ``every`` steps, for killed runs.

    Args:
        out_dir (str): Where ``resume.pt`` lives.
        settings (dict): The run's settings; a state saved with others is
            ignored.
        every (int): Save period in steps (0 = never).
    """

    def __init__(self, *, out_dir: str, settings: Dict, every: int):
        self.path = osp.join(out_dir, RESUME_FILE)
        self.settings = settings
        self.every = every

    def load(self) -> Optional[Dict]:
        import torch
        if not osp.isfile(self.path):
            return None
        state = torch.load(self.path, map_location='cpu', weights_only=True)
        return state if state.get('settings') == self.settings else None

    def maybe_save(self, step: int, steps: int, **state) -> None:
        import torch
        if not self.every or (step + 1) % self.every or step + 1 == steps:
            return
        with atomic_path(self.path) as tmp:
            torch.save(dict(state, settings=self.settings, step=step + 1),
                       tmp)

    def remove(self) -> None:
        if osp.isfile(self.path):
            os.remove(self.path)


def _run_phase(phase: str, steps: int, step_fn: Callable[[int], None], *,
               modules: Dict, optim, logs: Dict, resume: ResumeFile,
               state: Optional[Dict], progress: bool) -> None:
    """Run ``step_fn(step)`` for the remaining steps of one phase."""
    from pcm_plugin.utils.progress import progress_bar
    start = 0
    if state is not None and state['phase'] == phase:
        for key, module in modules.items():
            module.load_state_dict(state[key])
        optim.load_state_dict(state['optim'])
        start = state['step']
    bar = progress_bar(range(start, steps), initial=start, total=steps,
                       desc=f'mini CLIP: {phase}', disable=not progress)
    for step in bar:
        step_fn(step)
        bar.set_postfix(loss=f'{np.mean(logs[phase]["loss"][-20:]):.3f}')
        resume.maybe_save(step, steps, phase=phase, optim=optim.state_dict(),
                          logs=logs, **{k: m.state_dict()
                                        for k, m in modules.items()})


def pretrain_image_tower(model, *, steps: int, batch_size: int, lr: float,
                         seed: int, logs: Dict, resume: ResumeFile,
                         state: Optional[Dict], progress: bool) -> None:
    """Supervised pretraining of the image tower (its head is discarded).

    A ViT this small learns colours and backgrounds from a contrastive loss
    within a few hundred steps but shapes not even after thousands
    (measured: shape top-1 at chance after 4000 ClipLoss steps), far
    beyond the CPU budget; real CLIPs see vastly more data. So the image
    tower is first taught the shape of one-object scenes (a linear head on
    the image embedding, cross-entropy, constant learning rate: shape
    learning takes off late and a decaying rate stalls it; adding colour
    and background terms slowed it too), as image towers are often
    initialised from a classifier. The CLIP phase uses ``ClipLoss`` only.
    """
    import torch
    from torch.nn import functional as F
    head = torch.nn.Linear(model.visual.proj.shape[1], len(SHAPES))
    params = list(model.visual.parameters()) + list(head.parameters())
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    log = logs.setdefault('pretrain', dict(loss=[], accuracy=[]))

    def step_fn(step: int) -> None:
        for group in optim.param_groups:
            group['lr'] = lr * min(1.0, (step + 1) / 50)
        images, target = shape_batch(step, batch_size, seed)
        logits = head(model.encode_image(images))  # (B, num_shapes)
        loss = F.cross_entropy(logits, target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        log['loss'].append(float(loss.detach()))
        log['accuracy'].append(float((logits.argmax(1) == target)
                                     .float().mean()))

    _run_phase('pretrain', steps, step_fn, modules=dict(model=model,
                                                         head=head),
               optim=optim, logs=logs, resume=resume, state=state,
               progress=progress)


def concept_word_embeddings(model, tokenizer):
    """(C, Dg) prompt-ensemble embeddings of the world's concept words, with
    gradients (the concept bank's recipe: mean of unit template vectors)."""
    from torch.nn import functional as F
    total = 0
    for template in CONCEPT_TEMPLATES:
        prompts = [template.format(w) for w in DENSE_WORDS]
        total = total + F.normalize(model.encode_text(tokenizer(prompts)),
                                    dim=-1)  # (C, Dg)
    return total / len(CONCEPT_TEMPLATES)


def clip_phase(model, tokenizer, *, steps: int, batch_size: int, lr: float,
               weight_decay: float, warmup: int, seed: int, logs: Dict,
               resume: ResumeFile, state: Optional[Dict], progress: bool,
               dense_weight: float = 0.0, dense_scale: float = 10.0,
               image_concept_weight: float = 0.0) -> None:
    """``open_clip.loss.ClipLoss`` training of both towers, plus
    ``dense_weight`` times :func:`~.mini_clip_dense.dense_concept_loss` and
    ``image_concept_weight`` times
    :func:`~.mini_clip_dense.image_concept_loss`."""
    import open_clip
    import torch
    from torch.nn import functional as F

    from pcm_plugin.clip.clip_features import encode_image_tokens
    loss_fn = open_clip.loss.ClipLoss()
    optim = torch.optim.AdamW(model.parameters(), lr=lr,
                              weight_decay=weight_decay)
    log = logs.setdefault('clip', dict(loss=[]))
    grid = model.visual.grid_size[0]

    def step_fn(step: int) -> None:
        for group in optim.param_groups:
            group['lr'] = _cosine_lr(step, steps, lr, warmup)
        images, captions, scenes = training_batch(step, batch_size, seed)
        tokens, image_feats = encode_image_tokens(
            model, images_to_tensor(images))  # (B, 1+N, W), (B, Dg)
        text_feats = model.encode_text(tokenizer(captions), normalize=True)
        loss = loss_fn(F.normalize(image_feats, dim=-1), text_feats,
                       model.logit_scale.exp())
        if dense_weight > 0 or image_concept_weight > 0:
            words = concept_word_embeddings(model, tokenizer)  # (C, Dg)
            dense = dense_concept_loss(
                projected_patches(model, tokens), words,
                torch.from_numpy(patch_targets(scenes, grid)),
                scale=dense_scale)
            image = image_concept_loss(
                image_feats, words,
                torch.from_numpy(scene_word_sets(scenes)), scale=dense_scale)
            log.setdefault('dense', []).append(float(dense.detach()))
            log.setdefault('image_concept', []).append(float(image.detach()))
            loss = loss + dense_weight * dense + image_concept_weight * image
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():  # as in open_clip's trainer
            model.logit_scale.clamp_(0, np.log(100))
        log['loss'].append(float(loss.detach()))

    _run_phase('clip', steps, step_fn, modules=dict(model=model),
               optim=optim, logs=logs, resume=resume, state=state,
               progress=progress)


def train_mini_clip(out_dir: str, *, steps: int = 3000,
                    pretrain_steps: int = 2500, batch_size: int = 64,
                    lr: float = 1e-3, weight_decay: float = 0.1,
                    warmup: int = 50, seed: int = 0, threads: int = 1,
                    eval_scenes: int = 500, resume_every: int = 250,
                    dense_weight: float = 0.0, dense_scale: float = 10.0,
                    image_concept_weight: float = 0.0,
                    init_checkpoint: Optional[str] = None,
                    progress: bool = True) -> Dict:
    """Train a mini CLIP and save it to ``out_dir``.

    With the defaults this is the recipe of the committed, weakly-localized
    CLIP (from scratch: shape pretraining, then ClipLoss). The localized
    CLIP continues that one (``init_checkpoint``, ``pretrain_steps=0``) with
    the dense patch-concept term added (``dense_weight``).

    Args:
        out_dir (str): Output directory (config JSON, ``.pt``, metrics).
        steps (int): ClipLoss steps. Defaults to 3000.
        pretrain_steps (int): Image-tower steps before them
            (:func:`pretrain_image_tower`). Defaults to 2500.
        batch_size (int): Images per step. Defaults to 64.
        lr (float): Peak AdamW learning rate. Defaults to 1e-3.
        weight_decay (float): AdamW weight decay of the CLIP phase.
        warmup (int): Linear warm-up steps of the CLIP phase's cosine
            schedule. Defaults to 50.
        seed (int): Seed of initialisation and data. Defaults to 0.
        threads (int): torch CPU threads. Defaults to 1 (on a shared
            2-core machine 2 threads were up to 10x slower).
        eval_scenes (int): Held-out scenes of the final evaluation.
        resume_every (int): Save the training state every this many
            steps (0 = never). Defaults to 250.
        dense_weight (float): Weight of
            :func:`~.mini_clip_dense.dense_concept_loss` in the CLIP phase;
            0 (default) trains through the class token only.
        dense_scale (float): Its logit scale (and the image term's).
            Defaults to 10.
        image_concept_weight (float): Weight of
            :func:`~.mini_clip_dense.image_concept_loss`, which keeps the
            image embedding's concept retrieval sharp while the dense term
            moves the word embeddings. Defaults to 0.
        init_checkpoint (str, optional): Start from these mini CLIP weights
            instead of a random initialisation.
        progress (bool): Show progress bars.

    Returns:
        dict: Settings, timings, loss curves and
        :func:`~.mini_clip_eval.evaluate_mini_clip` results.
    """
    import open_clip
    import torch
    torch.set_num_threads(threads)
    settings = dict(steps=steps, pretrain_steps=pretrain_steps,
                    batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                    warmup=warmup, seed=seed, config=MINI_CLIP_CONFIG)
    if dense_weight > 0 or image_concept_weight > 0:
        settings.update(dense_weight=dense_weight, dense_scale=dense_scale,
                        image_concept_weight=image_concept_weight)
    if init_checkpoint is not None:
        settings['init_checkpoint_sha256'] = file_sha256(init_checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = osp.join(out_dir, f'{MINI_CLIP_NAME}.json')
    with open(cfg_path, 'w', encoding='utf-8') as f:
        json.dump(MINI_CLIP_CONFIG, f, indent=1)
    name = register_model_config(cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(
        name, pretrained=init_checkpoint).float().train()
    tokenizer = open_clip.get_tokenizer(name)
    resume = ResumeFile(out_dir=out_dir, settings=settings,
                        every=resume_every)
    state = resume.load()
    logs = state['logs'] if state is not None else {}
    start = time.time()
    common = dict(batch_size=batch_size, lr=lr, seed=seed, logs=logs,
                  resume=resume, state=state, progress=progress)
    if pretrain_steps and (state is None or state['phase'] == 'pretrain'):
        pretrain_image_tower(model, steps=pretrain_steps, **common)
    clip_phase(model, tokenizer, steps=steps, weight_decay=weight_decay,
               warmup=warmup, dense_weight=dense_weight,
               dense_scale=dense_scale,
               image_concept_weight=image_concept_weight, **common)
    model.eval()
    round_to_fp16_(model)
    save_mini_clip(model, out_dir)
    metrics = dict(
        settings=dict(settings, threads=threads),
        seconds_this_run=round(time.time() - start, 1),
        resumed_from=None if state is None else
        f'{state["phase"]} step {state["step"]}',
        pretrain_loss=_curve(logs.get('pretrain', {}).get('loss', [])),
        pretrain_shape_accuracy=_curve(
            logs.get('pretrain', {}).get('accuracy', [])),
        clip_loss=_curve(logs['clip']['loss']),
        dense_loss=_curve(logs['clip'].get('dense', [])),
        image_concept_loss=_curve(logs['clip'].get('image_concept', [])),
        eval=evaluate_mini_clip(model, tokenizer, num_scenes=eval_scenes,
                                seed=seed))
    with open(osp.join(out_dir, f'{MINI_CLIP_NAME}.metrics.json'), 'w',
              encoding='utf-8') as f:
        json.dump(metrics, f, indent=1)
    resume.remove()
    return metrics
