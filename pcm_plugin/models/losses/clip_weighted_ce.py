"""CLIP-weighted, label-smoothed cross-entropy of PCM-Net (docs/method.md §5).

Modified from the behaviour of the official PCM-Net loss
(``losses/weighted_label_smoothing.py``), written from the spec in plain
PyTorch. What it computes, with V the vocabulary size, eps the smoothing and
n the number of valid (non-padding) tokens in the batch:

* per-sample weight ``c_i = clamp(alpha * cos_i, weight_floor, 1)``; the
  official code floors at 0, the paper's Eq. 11 (``min(1, w * cos)``) has no
  floor (``weight_floor=None``);
* per-token loss ``l_t = KL(q || softmax(z_t))`` where ``q`` puts ``1 - eps``
  on the target word and ``eps / (V - 1)`` on every other word (label-smoothed
  CE minus a constant, so an exact prediction of ``q`` costs 0);
* focal factor on ``p_t``, the softmax probability of the target word:

  - ``'batch'`` (official default): ``mean_t (1 - p_t)^gamma *
    mean_t c_i(t) * l_t``; ``p_t`` is NOT detached, so the factor itself
    back-propagates;
  - ``'word'``: ``mean_t (1 - p_t)^gamma * c_i(t) * l_t``;
  - ``'none'``: ``mean_t c_i(t) * l_t`` (plain weighted label smoothing).

Means run over the valid tokens of the whole batch (EOS included, padding
excluded). They are not divided by the sum of weights, so low-CLIP samples
simply contribute less (§5.4).

``excluded_ids`` names logit rows that are not words of the vocabulary: the
softmax, the smoothing and V ignore them, so the loss is the V-word loss of
the remaining rows. A converted official model sets ``(1, 2)``: its
``[UNK]``/``[PAD]`` rows exist only for this plugin's id layout (the
official vocabulary has no such rows; its ``'UNK'`` word is an ordinary
row), and smoothing over them would add mass on two rows pinned at
probability 0. Models trained by this plugin keep ``()``: their ``[UNK]``
row is a learned word and ``[PAD]`` an output class like any other, as in
common label-smoothing implementations.

Official code and paper: the defaults follow the code. The paper's Eq. 11
is the option ``focal='none'``, ``weight_floor=None`` (it has neither the
focal factor nor the lower clamp).
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from pcm_plugin.registry import MODELS

FOCAL_MODES = ('batch', 'word', 'none')


def clip_sample_weights(clip_cos: Tensor,
                        *,
                        alpha: float,
                        weight_floor: Optional[float] = 0.0) -> Tensor:
    """Per-sample weight ``clamp(alpha * cos, weight_floor, 1)`` (§5.1).

    Args:
        clip_cos (Tensor): ``(B,)`` cosine between the CLIP embeddings of each
            synthetic image and its caption.
        alpha (float): Scale ``w`` of Eq. 11 (2.5 for ViT-B/32, 4.0 for
            ViT-L/14 in the official configs).
        weight_floor (float, optional): Lower clamp. ``0.0`` is the official
            code; ``None`` is the paper's Eq. 11 (``min(1, w * cos)``, so a
            negative cosine gives a negative weight). Defaults to 0.0.

    Returns:
        Tensor: ``(B,)`` weights; no gradient flows into ``clip_cos``.
    """
    if torch.isnan(clip_cos).any():
        raise ValueError(
            'clip_cos contains NaN (the feature store writes NaN when an '
            'image has no caption cosine). Recompute the cosines or pass '
            'clip_cos=None for unweighted label smoothing.')
    weights = (alpha * clip_cos.detach()).clamp(max=1.0)
    if weight_floor is not None:
        weights = weights.clamp(min=weight_floor)
    return weights


def smoothed_token_kl(log_probs: Tensor, safe_targets: Tensor,
                      label_smoothing: float) -> Tensor:
    """``KL(q || p)`` per token without materialising ``q`` (§5.2).

    ``KL = sum_v q_v log q_v - sum_v q_v log p_v``. The first sum is a
    constant; the second splits into ``q_other * sum_v log p_v`` plus the
    extra mass ``q_target - q_other`` on the target word.

    Args:
        log_probs (Tensor): ``(B, T, V)`` log-softmax of the logits.
        safe_targets (Tensor): ``(B, T)`` long, padding already replaced by a
            valid index (its value is masked out later).
        label_smoothing (float): ``eps`` in ``[0, 1)``.

    Returns:
        Tensor: ``(B, T)`` per-token KL (garbage at padded positions).
    """
    num_words = log_probs.size(-1)
    q_target = 1.0 - label_smoothing
    q_other = label_smoothing / (num_words - 1) if label_smoothing else 0.0
    # sum_v q_v log q_v with the convention 0 * log 0 = 0.
    neg_entropy = q_target * math.log(q_target)
    if q_other > 0:
        neg_entropy += label_smoothing * math.log(q_other)
    log_p_target = log_probs.gather(
        -1, safe_targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    cross = (q_target - q_other) * log_p_target  # (B, T)
    if q_other > 0:
        # Skipped when eps = 0: 0 * (-inf) would be NaN for masked words.
        cross = cross + q_other * log_probs.sum(-1)  # (B, T)
    return neg_entropy - cross


def masked_mean(values: Tensor, valid: Tensor, num_valid: Tensor) -> Tensor:
    """Mean of ``values`` over the ``valid`` positions.

    ``torch.where`` rather than a product, so inf/NaN at padded positions
    cannot leak into the sum.
    """
    return torch.where(valid, values, 0.0).sum() / num_valid


def clip_weighted_ce(logits: Tensor,
                     targets: Tensor,
                     clip_cos: Optional[Tensor] = None,
                     *,
                     alpha: float = 2.5,
                     label_smoothing: float = 0.1,
                     gamma: float = 2.0,
                     focal: str = 'batch',
                     weight_floor: Optional[float] = 0.0,
                     ignore_index: int = -100,
                     excluded_ids: Sequence[int] = ()) -> Tensor:
    """Functional CLIP-weighted label-smoothed CE (see the module docstring).

    Args:
        logits (Tensor): ``(B, T, V)`` decoder logits.
        targets (Tensor): ``(B, T)`` long word ids, ``ignore_index`` at
            padding.
        clip_cos (Tensor, optional): ``(B,)`` CLIP image-caption cosines.
            ``None`` gives every sample weight 1 (plain label smoothing, the
            "Base" ablation). Defaults to None.
        alpha (float): Weight scale. Defaults to 2.5.
        label_smoothing (float): ``eps``. Defaults to 0.1.
        gamma (float): Focal exponent; ``<= 0`` switches the factor off.
            Defaults to 2.0.
        focal (str): ``'batch'``, ``'word'`` or ``'none'``.
            Defaults to 'batch'.
        weight_floor (float, optional): Lower clamp of the weights; ``None``
            for the paper's Eq. 11 without floor. Defaults to 0.0.
        ignore_index (int): Target value of padding. Defaults to -100.
        excluded_ids (Sequence[int]): Logit rows that are not words (no
            probability, no smoothing mass, not counted in V); a target
            on one is an error. Defaults to () (every row is a word).

    Returns:
        Tensor: Scalar loss; an all-padding batch gives 0 with a gradient.
    """
    check_inputs(logits, targets, clip_cos, focal, label_smoothing,
                 ignore_index, excluded_ids)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log-softmax in half precision is lossy
    valid = targets != ignore_index  # (B, T)
    num_valid = valid.sum()
    if num_valid == 0:
        # A zero that stays in the graph (DDP expects every parameter to get
        # a gradient) and is 0, not 0 / 0 = NaN.
        return torch.where(valid[..., None], logits, 0.0).sum()

    safe_targets = targets.masked_fill(~valid, 0).long()  # (B, T)
    if excluded_ids:
        logits, safe_targets = drop_rows(logits, safe_targets, excluded_ids)
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    token_loss = smoothed_token_kl(log_probs, safe_targets,
                                   label_smoothing)  # (B, T)
    if clip_cos is not None:
        weights = clip_sample_weights(
            clip_cos.to(token_loss), alpha=alpha,
            weight_floor=weight_floor)  # (B,)
        token_loss = token_loss * weights[:, None]  # (B, T)

    if focal == 'none' or gamma <= 0:  # the official code: gamma <= 0 off
        return masked_mean(token_loss, valid, num_valid)
    p_target = log_probs.gather(
        -1, safe_targets.unsqueeze(-1)).squeeze(-1).exp()  # (B, T)
    focal_factor = (1.0 - p_target).pow(gamma)  # (B, T), not detached
    if focal == 'word':
        return masked_mean(focal_factor * token_loss, valid, num_valid)
    # 'batch': the official n x n outer product of the two token vectors,
    # masked and averaged, factorises into this product of two means.
    return (masked_mean(focal_factor, valid, num_valid) *
            masked_mean(token_loss, valid, num_valid))


def drop_rows(logits: Tensor, targets: Tensor,
              excluded_ids: Sequence[int]) -> Tuple[Tensor, Tensor]:
    """Logits without the ``excluded_ids`` rows, and targets renumbered to
    the rows that are left.

    Args:
        logits (Tensor): ``(B, T, V)``.
        targets (Tensor): ``(B, T)`` long, none of them excluded.
        excluded_ids (Sequence[int]): Rows to drop.

    Returns:
        tuple[Tensor, Tensor]: ``(B, T, V - len(excluded_ids))`` logits and
        ``(B, T)`` targets indexing them.
    """
    kept = torch.ones(logits.size(-1), dtype=torch.bool,
                      device=logits.device)
    kept[list(excluded_ids)] = False
    new_ids = kept.long().cumsum(0) - 1  # (V,) old id -> id among kept
    return logits[..., kept], new_ids[targets]


def check_inputs(logits: Tensor, targets: Tensor, clip_cos: Optional[Tensor],
                 focal: str, label_smoothing: float, ignore_index: int,
                 excluded_ids: Sequence[int] = ()) -> None:
    """Raise a clear error for shapes or values the loss cannot use."""
    if focal not in FOCAL_MODES:
        raise ValueError(f'focal must be one of {FOCAL_MODES}, got {focal!r}')
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f'label_smoothing must be in [0, 1), got {label_smoothing}')
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            'expected logits (B, T, V) and targets (B, T), got '
            f'{tuple(logits.shape)} and {tuple(targets.shape)}')
    if label_smoothing > 0 and logits.size(-1) < 2:
        raise ValueError('label smoothing needs a vocabulary of >= 2 words')
    if clip_cos is not None and clip_cos.shape != targets.shape[:1]:
        raise ValueError(f'clip_cos must have shape (B,) = '
                         f'({targets.size(0)},), got {tuple(clip_cos.shape)}')
    valid_targets = targets[targets != ignore_index]
    if valid_targets.numel() and (valid_targets.min() < 0 or
                                  valid_targets.max() >= logits.size(-1)):
        raise ValueError(
            f'targets must be in [0, {logits.size(-1)}) or equal '
            f'ignore_index={ignore_index}; got values in '
            f'[{int(valid_targets.min())}, {int(valid_targets.max())}]. '
            'Is ignore_index set to the padding value of your batches?')
    check_excluded(logits.size(-1), valid_targets, excluded_ids,
                   label_smoothing)


def check_excluded(num_rows: int, valid_targets: Tensor,
                   excluded_ids: Sequence[int],
                   label_smoothing: float) -> None:
    """Raise a clear error for ``excluded_ids`` the logits cannot use."""
    if not excluded_ids:
        return
    bad = [i for i in excluded_ids if not 0 <= i < num_rows]
    if bad or len(set(excluded_ids)) != len(excluded_ids):
        raise ValueError(f'excluded_ids={list(excluded_ids)} must be '
                         f'distinct ids in [0, {num_rows})')
    if label_smoothing > 0 and num_rows - len(excluded_ids) < 2:
        raise ValueError('label smoothing needs >= 2 words besides '
                         f'excluded_ids={list(excluded_ids)}')
    hit = sorted(set(valid_targets.tolist()) & set(excluded_ids))
    if hit:
        raise ValueError(
            f'targets include ids {hit}, which excluded_ids='
            f'{list(excluded_ids)} says are not words (a converted '
            'official model has no [UNK]/[PAD] word: its tokenizer maps '
            "unknown words to the official 'UNK' word, if the official "
            'vocabulary has one; a caption with an unknown word cannot be '
            'scored without it)')


@MODELS.register_module()
class CLIPWeightedCELoss(nn.Module):
    """CLIP-weighted label-smoothed cross-entropy with a focal factor (§5).

    See the module docstring for the formula. ``weight_floor=0.0`` follows
    the official code (``clamp(alpha * cos, 0, 1)``); ``weight_floor=None``
    is the paper's Eq. 11 ``min(1, w * cos)`` with no lower clamp.

    Args:
        alpha (float): Weight scale (2.5 ViT-B/32, 4.0 ViT-L/14).
            Defaults to 2.5.
        label_smoothing (float): ``eps``. Defaults to 0.1.
        gamma (float): Focal exponent; ``<= 0`` switches the factor off.
            Defaults to 2.0.
        focal (str): ``'batch'`` (official default), ``'word'`` or
            ``'none'``. Defaults to 'batch'.
        weight_floor (float, optional): Lower clamp of the per-sample weight.
            Defaults to 0.0.
        ignore_index (int): Target value marking padding. Defaults to -100.
        excluded_ids (Sequence[int]): Logit rows that are not words: no
            probability, no smoothing mass, not counted in V. ``(1, 2)``
            for a converted official model (its ``[UNK]``/``[PAD]`` rows);
            ``()`` for models trained by this plugin. Defaults to ().
        loss_weight (float): Multiplier of the final loss. Defaults to 1.0.
    """

    def __init__(self,
                 *,
                 alpha: float = 2.5,
                 label_smoothing: float = 0.1,
                 gamma: float = 2.0,
                 focal: str = 'batch',
                 weight_floor: Optional[float] = 0.0,
                 ignore_index: int = -100,
                 excluded_ids: Sequence[int] = (),
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if focal not in FOCAL_MODES:
            raise ValueError(
                f'focal must be one of {FOCAL_MODES}, got {focal!r}')
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.gamma = gamma
        self.focal = focal
        self.weight_floor = weight_floor
        self.ignore_index = ignore_index
        self.excluded_ids = tuple(int(i) for i in excluded_ids)
        self.loss_weight = loss_weight

    def forward(self,
                logits: Tensor,
                targets: Tensor,
                clip_cos: Optional[Tensor] = None) -> Tensor:
        """Compute the loss.

        Args:
            logits (Tensor): ``(B, T, V)`` decoder logits.
            targets (Tensor): ``(B, T)`` long, ``ignore_index`` at padding.
            clip_cos (Tensor, optional): ``(B,)`` CLIP cosines; ``None``
                weights every sample by 1. Defaults to None.

        Returns:
            Tensor: Scalar loss times ``loss_weight``.
        """
        loss = clip_weighted_ce(
            logits,
            targets,
            clip_cos,
            alpha=self.alpha,
            label_smoothing=self.label_smoothing,
            gamma=self.gamma,
            focal=self.focal,
            weight_floor=self.weight_floor,
            ignore_index=self.ignore_index,
            excluded_ids=self.excluded_ids)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'alpha={self.alpha}, label_smoothing={self.label_smoothing}, '
                f'gamma={self.gamma}, focal={self.focal!r}, '
                f'weight_floor={self.weight_floor}, '
                f'ignore_index={self.ignore_index}, '
                f'excluded_ids={self.excluded_ids}')
