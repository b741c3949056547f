"""The picture that explains PCM: which patches got which concept words.

For one image, PCM retrieves its top-K concepts from the global feature,
scores every (patch, concept) pair by cosine in CLIP space and writes the
concepts' text features into the patches of the best M pairs
(docs/method.md §3.1-§3.4). :func:`mixup_pairs` recomputes exactly those
pairs with the model's own functions, and :func:`draw_mixup` draws them on
the image: CLIP's centre crop divided into its patch grid, each mixed patch
tinted and labelled with its concept, the caption and the K concepts below.
"""
import math
import os
import os.path as osp
import textwrap
from typing import List, Sequence, Tuple

import torch
from PIL import Image, ImageDraw, ImageFont

from pcm_plugin.clip.image_io import load_rgb_image
from pcm_plugin.models.mixup_selection import select_pairs
from pcm_plugin.utils.fileio import atomic_path

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (128, 128, 0)]


@torch.no_grad()
def mixup_pairs(mixup, patch_feats: torch.Tensor, global_feat: torch.Tensor
                ) -> List[dict]:
    """The concepts and (patch, concept) pairs PCM uses, per image.

    Args:
        mixup (PCMMixup): The model's mix-up module (``mode != 'none'``).
        patch_feats (Tensor): (B, N, Dv) raw CLIP patch tokens.
        global_feat (Tensor): (B, Dg) CLIP image embeddings.

    Returns:
        list[dict]: per image, ``concepts`` (the K words, best first) and
        ``pairs``: ``(patch index, concept slot)`` of the top-M pairs whose
        concept was kept, best first.
    """
    # The module's own settings, its selection rule and excluded words
    # included: the figure shows the pairs the model mixes.
    concept_idx, pair_idx, pair_ok = select_pairs(
        mixup.clip_head(patch_feats), global_feat, mixup.concept_embeds,
        **mixup.selection_settings())  # (B, K), (B, M), (B, M)
    K = concept_idx.shape[1]
    out = []
    for b in range(len(concept_idx)):
        out.append(dict(
            concepts=[mixup.concept_words[i] for i in concept_idx[b]],
            pairs=[(int(p) // K, int(p) % K) for p, ok in
                   zip(pair_idx[b], pair_ok[b]) if ok]))
    return out


def centre_crop_box(width: int, height: int) -> Tuple[int, int, int, int]:
    """The square CLIP's preprocessing keeps (resize short side, centre
    crop): ``(left, top, right, bottom)`` in the original image."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def draw_mixup(image, pairs: Sequence[Tuple[int, int]],
               concepts: Sequence[str], num_patches: int, *,
               caption: str = '', size: int = 448):
    """Draw the mixed patches and their concept words on ``image``.

    Args:
        image (PIL.Image): The original image.
        pairs (Sequence): ``(patch index, concept slot)`` (row-major grid).
        concepts (Sequence[str]): The K retrieved concepts.
        num_patches (int): N, a square grid (49 for ViT-B/32, 64 for the
            pooled ViT-L/14 layout).
        caption (str): The predicted caption, written below.
        size (int): Side of the drawn crop in pixels. Defaults to 448.

    Returns:
        PIL.Image: The figure.
    """
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f'{num_patches} patches do not form a square grid')
    crop = image.convert('RGB').crop(centre_crop_box(*image.size)).resize(
        (size, size), Image.BICUBIC)
    cell = size / grid
    overlay = Image.new('RGBA', crop.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for k in range(1, grid):  # the patch grid
        draw.line([(k * cell, 0), (k * cell, size)], fill=(255, 255, 255, 90))
        draw.line([(0, k * cell), (size, k * cell)], fill=(255, 255, 255, 90))
    font = ImageFont.load_default()
    labels = {}
    for patch, slot in pairs:
        labels.setdefault(patch, []).append(slot)
    for patch, slots in labels.items():
        row, col = divmod(patch, grid)
        box = (col * cell, row * cell, (col + 1) * cell, (row + 1) * cell)
        colour = PALETTE[slots[0] % len(PALETTE)]
        draw.rectangle(box, fill=colour + (110,), outline=colour + (255,),
                       width=2)
        for line, slot in enumerate(slots[:3]):
            draw.text((box[0] + 2, box[1] + 2 + 11 * line),
                      concepts[slot][:10], fill=(255, 255, 255, 255),
                      font=font, stroke_width=1, stroke_fill=(0, 0, 0, 255))
    figure_lines = textwrap.wrap(f'caption: {caption}', 70) + textwrap.wrap(
        'concepts: ' + ', '.join(concepts), 70)
    figure = Image.new('RGB', (size, size + 8 + 14 * len(figure_lines)),
                       'white')
    figure.paste(Image.alpha_composite(crop.convert('RGBA'), overlay)
                 .convert('RGB'), (0, 0))
    text = ImageDraw.Draw(figure)
    for k, line in enumerate(figure_lines):
        text.text((4, size + 4 + 14 * k), line, fill=(0, 0, 0), font=font)
    return figure


def save_mixup_figures(inferencer, images: Sequence[str], out_dir: str
                       ) -> List[str]:
    """One figure per image file, ``<out_dir>/<stem>_mixup.png``.

    Args:
        inferencer (PCMCaptionInferencer): A loaded model with its CLIP.
        images (Sequence[str]): Image files.
        out_dir (str): Where the PNGs go.

    Returns:
        list[str]: The written files.
    """
    mixup = inferencer.model.mixup
    if mixup.mode == 'none':
        raise ValueError('this model has no mix-up (mixup.mode=none): there '
                         'is nothing to draw')
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path in images:
        image = load_rgb_image(path)
        feats = inferencer.features([path])
        caption = inferencer.model.generate(
            feats, beam_size=inferencer.beam_size)[0]
        found = mixup_pairs(mixup, feats['patch_feats'],
                            feats['global_feat'])[0]
        figure = draw_mixup(image, found['pairs'], found['concepts'],
                            mixup.num_patches, caption=caption)
        out = osp.join(out_dir, osp.splitext(osp.basename(path))[0] +
                       '_mixup.png')
        with atomic_path(out, suffix='.png') as tmp:
            figure.save(tmp)
        written.append(out)
    return written
