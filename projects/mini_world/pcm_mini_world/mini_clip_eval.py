"""Is the mini CLIP useful? Retrieval and concept-retrieval checks.

Run on held-out scenes (their own RNG stream, disjoint from the corpus and
from the CLIP's training scenes), with real and synthetic-style renders.
"""
from typing import Dict, List, Sequence

import numpy as np

from .mini_clip import (
    concept_embeddings,
    encode_images,
    encode_texts,
    images_to_tensor,
    projected_patches,
)
from .render import render_real, render_synthetic
from .scenes import BACKGROUNDS, COLOURS, SHAPES, generate_split


def _concept_hits(image_emb, scenes, model, tokenizer) -> Dict[str, float]:
    """Top-1 shape/colour/background and top-5 recall over all words."""
    groups = dict(shape=list(SHAPES), colour=list(COLOURS),
                  background=list(BACKGROUNDS))
    words: List[str] = sum(groups.values(), [])
    sims = image_emb @ concept_embeddings(model, tokenizer, words).T  # (N, C)
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
        if single:
            result[domain]['concepts_single_object'] = _concept_hits(
                image_emb[single], [scenes[i] for i in single], model,
                tokenizer)
        result[domain]['concepts_all'] = _concept_hits(
            image_emb, scenes, model, tokenizer)
        result[domain]['localisation'] = patch_localisation(
            model, tokenizer, scenes, images)
    return result


def patch_localisation(model, tokenizer, scenes, images,
                       batch_size: int = 256) -> Dict:
    """Where PCM's selection lands with this CLIP's own head and bank.

    The same measurement as ``projects/mini_world/tools/diagnose.py`` on a
    world,
    straight from the model: patch tokens through ``ln_post`` + ``proj``,
    the world's concept words through the concept-bank prompt ensemble,
    PCM-Net's default selection (K=5, M=5, temperature 0.01).

    Returns:
        dict: :func:`~.localisation.localisation_stats`.
    """
    import torch

    from pcm_plugin.clip.clip_features import encode_image_tokens
    from pcm_plugin.models.mixup_selection import select_pairs

    from .localisation import localisation_stats
    from .mini_clip_dense import WORDS
    patches, globs = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            tokens, glob = encode_image_tokens(
                model, images_to_tensor(images[i:i + batch_size]))
            patches.append(projected_patches(model, tokens))  # (b, N, Dg)
            globs.append(glob)
        bank = concept_embeddings(model, tokenizer, WORDS)  # (C, Dg)
    patch_proj = torch.cat(patches)  # (n, N, Dg)
    concept_idx, pair_idx, pair_ok = select_pairs(
        patch_proj, torch.cat(globs), bank)
    return localisation_stats(scenes, WORDS, concept_idx, pair_idx, pair_ok,
                              num_patches=patch_proj.shape[1])
