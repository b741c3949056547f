# Copyright (c) pcm_plugin authors. MIT licence.
"""Concept banks from the CLIP text encoder, by prompt ensemble.

Each concept word is put into every template, each template's text
embedding is L2-normalised, the normalised embeddings are averaged and the
mean is normalised again (ViECap's recipe, docs/method.md §2.5). With one
template this is simply the unit embedding of that prompt.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from pcm_plugin.clip.clip_features import load_open_clip_text_model
from pcm_plugin.models.concept_bank import (
    default_concept_words,
    save_concept_bank,
)
from pcm_plugin.utils.fileio import file_sha256
from pcm_plugin.utils.progress import progress_bar

# The 7 CLIP templates of ViECap's prompt ensemble (docs/method.md §2.5).
ENSEMBLE_TEMPLATES = (
    'itap of a {}.',
    'a bad photo of the {}.',
    'a origami {}.',
    'a photo of the large {}.',
    'a {} in a video game.',
    'art of the {}.',
    'a photo of the small {}.',
)
SINGLE_TEMPLATES = ('a photo of {}.',)


def resolve_templates(spec: str = 'ensemble') -> List[str]:
    """Templates from ``'ensemble'``, ``'single'`` or a text file.

    Args:
        spec (str): ``'ensemble'`` (the 7 ViECap templates), ``'single'``
            (``'a photo of {}.'``) or a file with one template per line
            (blank lines and ``#`` comments ignored), each holding ``{}``
            exactly once.

    Returns:
        list[str]: The templates.
    """
    if spec == 'ensemble':
        return list(ENSEMBLE_TEMPLATES)
    if spec == 'single':
        return list(SINGLE_TEMPLATES)
    if not osp.isfile(spec):
        raise FileNotFoundError(
            f'--templates {spec!r}: not `ensemble`, `single` or a file')
    templates = []
    with open(spec, encoding='utf-8') as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if line.count('{}') != 1 or line.count('{') != 1:
                raise ValueError(f'{spec}:{line_no}: template {line!r} must '
                                 'contain `{}` exactly once (and no other '
                                 'braces)')
            templates.append(line)
    if not templates:
        raise ValueError(f'{spec}: no templates')
    return templates


def read_word_list(path: str) -> List[str]:
    """Concept words, one per line (blank lines and ``#`` comments skipped).

    Raises:
        ValueError: naming the line of a duplicate word.
    """
    words, first = [], {}
    with open(path, encoding='utf-8') as f:
        for line_no, line in enumerate(f, start=1):
            word = line.strip()
            if not word or word.startswith('#'):
                continue
            if word in first:
                raise ValueError(f'{path}:{line_no}: duplicate concept word '
                                 f'{word!r} (first on line {first[word]})')
            first[word] = line_no
            words.append(word)
    if not words:
        raise ValueError(f'{path}: no concept words')
    return words


def encode_concepts(model, tokenizer, words: Sequence[str],
                    templates: Sequence[str], *, batch_size: int = 256,
                    progress: bool = False) -> np.ndarray:
    """Prompt-ensemble CLIP text embeddings of concept words.

    Args:
        model: An open_clip model (``encode_text``).
        tokenizer: Its tokenizer (list of str -> (B, L) ids).
        words (Sequence[str]): C concept words.
        templates (Sequence[str]): T templates with ``{}``.
        batch_size (int): Prompts per forward pass. Defaults to 256.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        np.ndarray: (C, D) float32, unit rows.
    """
    total = None
    with torch.no_grad(), progress_bar(
            total=len(words) * len(templates), desc='prompts',
            disable=not progress) as bar:
        for template in templates:
            rows = []
            for start in range(0, len(words), batch_size):
                prompts = [template.format(w)
                           for w in words[start:start + batch_size]]
                emb = model.encode_text(tokenizer(prompts)).float()  # (b, D)
                rows.append(emb / emb.norm(dim=-1, keepdim=True))
                bar.update(len(prompts))
            unit = torch.cat(rows)  # (C, D)
            total = unit if total is None else total + unit
    mean = total / len(templates)  # (C, D)
    return (mean / mean.norm(dim=-1, keepdim=True)).numpy()


def encode_meta(*, model_name: str, checkpoint: Optional[str],
                templates: Sequence[str], words_source: str,
                model_config: Optional[str] = None,
                pretrained: Optional[str] = None) -> Dict:
    """The ``meta`` of an encoded bank: what exactly produced it."""
    meta = dict(source='tools/build_concepts.py encode', clip_model=model_name,
                clip_checkpoint=checkpoint, clip_pretrained=pretrained,
                templates=list(templates), words=words_source,
                model_config=model_config)
    if checkpoint and osp.isfile(checkpoint):
        meta['clip_checkpoint_sha256'] = file_sha256(checkpoint)
    return meta


def build_concept_bank(out: str, *, clip_model: str,
                       words: Optional[Sequence[str]] = None,
                       words_file: Optional[str] = None,
                       templates: str = 'ensemble',
                       clip_checkpoint: Optional[str] = None,
                       model_config: Optional[str] = None,
                       pretrained: Optional[str] = None,
                       cache_dir: Optional[str] = None,
                       batch_size: int = 256, dtype: str = 'float16',
                       progress: bool = True) -> Dict:
    """Encode concept words with an open_clip text tower into a bank file.

    What ``tools/build_concepts.py encode`` runs.

    Args:
        out (str): The ``.npz`` bank to write.
        clip_model (str): open_clip model name.
        words (list[str], optional): The words; else ``words_file``; else
            the shipped 446 COCO concept words.
        words_file (str, optional): One word per line.
        templates (str): ``'ensemble'``, ``'single'`` or a template file
            (:func:`resolve_templates`).
        clip_checkpoint, model_config, pretrained, cache_dir: Where the
            CLIP comes from (:func:`load_open_clip_text_model`).
        batch_size (int): Prompts per forward.
        dtype (str): Stored dtype, ``'float16'`` or ``'float32'``.
        progress (bool): Progress bar.

    Returns:
        dict: ``num_words``, ``num_templates`` and ``shape``.
    """
    if words is None:
        words = read_word_list(words_file) if words_file else \
            default_concept_words()
    template_list = resolve_templates(templates)
    model, tokenizer = load_open_clip_text_model(
        clip_model, clip_checkpoint, model_config, pretrained=pretrained,
        cache_dir=cache_dir)
    embeddings = encode_concepts(model, tokenizer, words, template_list,
                                 batch_size=batch_size, progress=progress)
    meta = encode_meta(model_name=clip_model, checkpoint=clip_checkpoint,
                       templates=template_list,
                       words_source=words_file or 'coco_concepts_446.txt',
                       model_config=model_config, pretrained=pretrained)
    save_concept_bank(out, list(words), embeddings.astype(dtype), meta)
    return dict(num_words=len(words), num_templates=len(template_list),
                shape=list(embeddings.shape))
