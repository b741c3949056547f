"""The selection maths of the mix-up (docs/method.md §3.1-3.4), as pure
functions of tensors: concept retrieval, patch-concept affinity, the top-M
(patch, concept) pairs and the textual patches. :class:`PCMMixup` calls
:func:`salient_patch_mixup`; the localisation diagnostic and the mix-up
figure call :func:`select_pairs`, the same steps without the textual
patches.
"""
from typing import Tuple

import torch
import torch.nn.functional as F


def unit(x: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """``x`` scaled to unit length along its last dimension."""
    # The official code divides by (norm + 1e-9): a zeroed concept stays 0.
    return x / (x.norm(dim=-1, keepdim=True) + eps)


def retrieve_concepts(global_feat: torch.Tensor, concept_embeds: torch.Tensor,
                      *, top_k: int, temperature: float,
                      threshold: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-K concepts of each image by cosine of the global feature (Eq. 1).

    Returns:
        tuple: ``concept_idx`` (B, K) long and ``keep`` (B, K) bool, False for
        concepts whose retrieval probability is not above ``threshold``.
    """
    logits = unit(global_feat) @ unit(concept_embeds).t()  # (B, C)
    probs = (logits / temperature).softmax(dim=-1)  # (B, C)
    top_probs, concept_idx = probs.topk(top_k, dim=-1)  # (B, K), (B, K)
    return concept_idx, top_probs > threshold


def patch_concept_affinity(patch_proj: torch.Tensor,
                           concepts: torch.Tensor,
                           keep: torch.Tensor) -> torch.Tensor:
    """``A[b, j, k] = cos(patch_proj[b, j], concepts[b, k])`` (Eq. 2).

    Args:
        patch_proj (Tensor): (B, N, Dg) patches in CLIP space.
        concepts (Tensor): (B, K, Dg) unit concept vectors of each image.
        keep (Tensor): (B, K) bool; dropped concepts get affinity -inf.

    Returns:
        Tensor: (B, N, K) affinity.
    """
    affinity = unit(patch_proj) @ concepts.transpose(1, 2)  # (B, N, K)
    return affinity.masked_fill(~keep[:, None, :], float('-inf'))


def top_patch_concept_pairs(affinity: torch.Tensor, top_m: float
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The top-M (patch, concept) pairs of the flattened affinity (§3.4).

    Args:
        affinity (Tensor): (B, N, K), -inf for dropped concepts.
        top_m (float): Number of pairs M; a value in (0, 1) is a fraction
            of N*K.

    Returns:
        tuple: ``pair_idx`` (B, M) indices into the flattened N*K matrix
        (patch ``pair_idx // K``, concept slot ``pair_idx % K``) and
        ``pair_ok`` (B, M) bool, False for pairs of dropped concepts.
    """
    _, N, K = affinity.shape
    num_pairs = int(top_m * N * K) if 0 < top_m < 1 else int(top_m)
    num_pairs = max(1, min(num_pairs, N * K))
    flat = affinity.flatten(1)  # (B, N*K)
    pair_idx = flat.topk(num_pairs, dim=-1).indices  # (B, M)
    pair_ok = flat.gather(1, pair_idx) > float('-inf')  # (B, M)
    return pair_idx, pair_ok


def concept_affinity(patch_proj: torch.Tensor, global_feat: torch.Tensor,
                     concept_embeds: torch.Tensor, *, top_k: int,
                     temperature: float, threshold: float
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-2 of :func:`salient_patch_mixup`: each image's top-K
    concepts and their affinity with every patch.

    Returns:
        tuple: ``concept_idx`` (B, K) long, ``concepts`` (B, K, Dg) unit
        concept vectors and ``affinity`` (B, N, K), -inf for dropped
        concepts.
    """
    concept_idx, keep = retrieve_concepts(
        global_feat, concept_embeds, top_k=top_k, temperature=temperature,
        threshold=threshold)  # (B, K), (B, K)
    concepts = unit(concept_embeds)[concept_idx]  # (B, K, Dg)
    affinity = patch_concept_affinity(patch_proj, concepts, keep)  # (B, N, K)
    return concept_idx, concepts, affinity


@torch.no_grad()
def select_pairs(patch_proj: torch.Tensor, global_feat: torch.Tensor,
                 concept_embeds: torch.Tensor, *, top_k: int = 5,
                 top_m: float = 5, temperature: float = 0.01,
                 threshold: float = 0.0
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The concepts and (patch, concept) pairs :func:`salient_patch_mixup`
    selects, for diagnostics and figures (arguments as there).

    Returns:
        tuple: ``concept_idx`` (B, K), ``pair_idx`` (B, M) into the
        flattened (N, K) affinity, ``pair_ok`` (B, M) bool.
    """
    concept_idx, _, affinity = concept_affinity(
        patch_proj, global_feat, concept_embeds, top_k=top_k,
        temperature=temperature, threshold=threshold)
    pair_idx, pair_ok = top_patch_concept_pairs(affinity, top_m)
    return concept_idx, pair_idx, pair_ok


def salient_patch_mixup(
    patch_proj: torch.Tensor,
    global_feat: torch.Tensor,
    concept_embeds: torch.Tensor,
    top_k: int = 5,
    top_m: float = 5,
    temperature: float = 0.01,
    threshold: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select salient patches and build their textual replacements.

    1. Retrieve the top-K concepts by cosine(global, concept).
    2. Patch-concept affinity ``A[b, j, k] = cos(patch_proj[b, j], s_k)``.
    3. Textual patch ``t_j = sum_k softmax_k(A[b, j] / temperature) s_k``
       (a convex mixture of unit concept vectors, not re-normalised).
    4. Take the top-M entries of the flattened ``A`` (B, N*K); every patch
       appearing in them is mixed, so 1..M distinct patches per image (one
       patch may be the best match of several concepts).

    Concepts whose retrieval probability is <= ``threshold`` are left out of
    both the mixture and the selection. (The official code zeroes their
    vectors instead, which gives them affinity 0 rather than excluding them;
    with its threshold 0.0 no concept is ever dropped, so both agree.)

    Args:
        patch_proj (Tensor): (B, N, Dg) patches in CLIP space
            (``ln_post(v) @ proj``).
        global_feat (Tensor): (B, Dg) CLIP image embeddings.
        concept_embeds (Tensor): (C, Dg) concept text embeddings.
        top_k (int): Concepts per image, K. Defaults to 5.
        top_m (float): Number of (patch, concept) pairs, M; a value in (0, 1)
            is a fraction of N*K. Defaults to 5.
        temperature (float): Softmax temperature. Defaults to 0.01.
        threshold (float): Minimum retrieval probability. Defaults to 0.0.

    Returns:
        tuple: ``textual_patches`` (B, N, Dg), ``replace_mask`` (B, N) bool,
        ``concept_idx`` (B, K) long.
    """
    B, N, _ = patch_proj.shape
    # (B, K), (B, K, Dg), (B, N, K)
    concept_idx, concepts, affinity = concept_affinity(
        patch_proj, global_feat, concept_embeds, top_k=top_k,
        temperature=temperature, threshold=threshold)
    weights = (affinity / temperature).softmax(dim=-1)  # (B, N, K)
    weights = weights.nan_to_num(0.0)  # every concept dropped -> t_j = 0
    textual_patches = weights @ concepts  # (B, N, Dg)

    K = concept_idx.shape[1]
    pair_idx, pair_ok = top_patch_concept_pairs(affinity, top_m)  # (B, M) x2
    patch_of_pair = F.one_hot(pair_idx // K, N).bool()  # (B, M, N)
    # Pairs of dropped concepts (affinity -inf) must not select their patch.
    replace_mask = (patch_of_pair & pair_ok[..., None]).any(dim=1)  # (B, N)
    return textual_patches, replace_mask, concept_idx
