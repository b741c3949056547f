"""The selection maths of the mix-up (docs/method.md §3.1-3.4), as pure
functions of tensors: concept retrieval, patch-concept affinity, the
(patch, concept) pairs and the textual patches. :class:`PCMMixup` calls
:func:`salient_patch_mixup`; the localisation diagnostic and the mix-up
figure call :func:`select_pairs`, the same steps without the textual
patches.

Two selection rules (``selection``):

* ``'official'``: the official code's: the top-M pairs of the flattened
  (patch, concept) affinity, one patch possibly taking several concepts
  (:func:`top_patch_concept_pairs`).
* ``'per_concept'``: ours, beyond the paper: each retrieved concept writes
  into one patch of its own, at most one concept per patch
  (:func:`per_concept_pairs`).

Either rule can keep some bank words out of the writing (``writable``, e.g.
background "stuff" words, :func:`writable_concepts`): they are still
retrieved into the K slots but never selected and never part of a textual
patch.
"""
from typing import Optional, Sequence, Tuple

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


def writable_concepts(bank_words: Sequence[str],
                      excluded_words: Sequence[str]) -> torch.Tensor:
    """Which bank words a textual patch may carry.

    Args:
        bank_words (Sequence[str]): The C words of the concept bank.
        excluded_words (Sequence[str]): Words kept out of the writing;
            words absent from the bank are ignored (one list may serve
            several banks).

    Returns:
        Tensor: (C,) bool, False for the excluded words.
    """
    excluded = set(excluded_words)
    return torch.tensor([w not in excluded for w in bank_words],
                        dtype=torch.bool)  # (C,)


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


def pair_count(top_m: float, num_patches: int, num_slots: int) -> int:
    """M, the number of pairs asked for: ``top_m`` itself, or a fraction
    of N*K when it lies in (0, 1); at least 1 and at most N*K."""
    num_pairs = (int(top_m * num_patches * num_slots) if 0 < top_m < 1
                 else int(top_m))
    return max(1, min(num_pairs, num_patches * num_slots))


def top_patch_concept_pairs(affinity: torch.Tensor, top_m: float
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The top-M (patch, concept) pairs of the flattened affinity (§3.4):
    the official rule.

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
    num_pairs = pair_count(top_m, N, K)
    flat = affinity.flatten(1)  # (B, N*K)
    pair_idx = flat.topk(num_pairs, dim=-1).indices  # (B, M)
    pair_ok = flat.gather(1, pair_idx) > float('-inf')  # (B, M)
    return pair_idx, pair_ok


def per_concept_pairs(affinity: torch.Tensor, top_m: float
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One patch per concept: ours, beyond the paper.

    The official ranking under the constraint that a patch and a concept
    slot each appear in at most one pair (a greedy matching): the best
    remaining (patch, concept) pair is taken, its patch and its concept
    are struck out, and so on. Each kept concept thus writes into its
    best-matching patch unless a concept with a higher affinity took that
    patch first; then it takes its best free patch. Ties go to the lower
    patch, then the lower slot (``argmax`` returns the first maximum).

    Args:
        affinity (Tensor): (B, N, K), -inf for dropped concepts.
        top_m (float): As :func:`top_patch_concept_pairs`; the rule makes
            at most K (and at most N) pairs, so M = min(M, K, N).

    Returns:
        tuple: ``pair_idx`` (B, M) into the flattened N*K matrix, best
        first, M distinct patches and M distinct slots per image;
        ``pair_ok`` (B, M) bool, False once the kept concepts (or the
        patches) are used up.
    """
    B, N, K = affinity.shape
    num_pairs = min(pair_count(top_m, N, K), K, N)
    free = affinity.clone()  # (B, N, K)
    rows = torch.arange(B, device=affinity.device)  # (B,)
    picks, oks = [], []
    for _ in range(num_pairs):
        flat = free.flatten(1)  # (B, N*K)
        best = flat.argmax(dim=-1)  # (B,)
        oks.append(flat.gather(1, best[:, None])[:, 0] > float('-inf'))
        picks.append(best)
        free[rows, best // K, :] = float('-inf')  # the patch is taken
        free[rows, :, best % K] = float('-inf')  # the concept has written
    return torch.stack(picks, dim=1), torch.stack(oks, dim=1)  # (B, M) x2


SELECTIONS = {'official': top_patch_concept_pairs,
              'per_concept': per_concept_pairs}


def choose_pairs(affinity: torch.Tensor, top_m: float,
                 selection: str = 'official'
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pairs of rule ``selection`` (a key of :data:`SELECTIONS`):
    ``pair_idx`` (B, M) and ``pair_ok`` (B, M), as the rules return."""
    if selection not in SELECTIONS:
        raise ValueError(f'selection must be one of {tuple(SELECTIONS)}, '
                         f'got {selection!r}')
    return SELECTIONS[selection](affinity, top_m)


def concept_affinity(patch_proj: torch.Tensor, global_feat: torch.Tensor,
                     concept_embeds: torch.Tensor, *, top_k: int,
                     temperature: float, threshold: float,
                     writable: Optional[torch.Tensor] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-2 of :func:`salient_patch_mixup`: each image's top-K
    concepts and their affinity with every patch.

    Returns:
        tuple: ``concept_idx`` (B, K) long, ``concepts`` (B, K, Dg) unit
        concept vectors and ``affinity`` (B, N, K), -inf for dropped
        concepts and for those ``writable`` (C,) bool excludes.
    """
    concept_idx, keep = retrieve_concepts(
        global_feat, concept_embeds, top_k=top_k, temperature=temperature,
        threshold=threshold)  # (B, K), (B, K)
    if writable is not None:
        # Retrieved all the same (the K slots do not change), but treated
        # as a dropped concept from here on: never selected, never mixed.
        keep = keep & writable.to(keep.device)[concept_idx]  # (B, K)
    concepts = unit(concept_embeds)[concept_idx]  # (B, K, Dg)
    affinity = patch_concept_affinity(patch_proj, concepts, keep)  # (B, N, K)
    return concept_idx, concepts, affinity


@torch.no_grad()
def select_pairs(patch_proj: torch.Tensor, global_feat: torch.Tensor,
                 concept_embeds: torch.Tensor, *, top_k: int = 5,
                 top_m: float = 5, temperature: float = 0.01,
                 threshold: float = 0.0, selection: str = 'official',
                 writable: Optional[torch.Tensor] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The concepts and (patch, concept) pairs :func:`salient_patch_mixup`
    selects, for diagnostics and figures (arguments as there).

    Returns:
        tuple: ``concept_idx`` (B, K), ``pair_idx`` (B, M) into the
        flattened (N, K) affinity, ``pair_ok`` (B, M) bool.
    """
    concept_idx, _, affinity = concept_affinity(
        patch_proj, global_feat, concept_embeds, top_k=top_k,
        temperature=temperature, threshold=threshold, writable=writable)
    pair_idx, pair_ok = choose_pairs(affinity, top_m, selection)
    return concept_idx, pair_idx, pair_ok


def write_pair_concepts(textual: torch.Tensor, concepts: torch.Tensor,
                        pair_idx: torch.Tensor, pair_ok: torch.Tensor
                        ) -> torch.Tensor:
    """Put each selected pair's own concept vector into its patch.

    For :func:`per_concept_pairs`, whose pairs have distinct patches: a
    patch taken by a concept that is not its best match would otherwise
    carry, through the sharp softmax mixture, the text of its best
    concept, which already wrote elsewhere.

    Args:
        textual (Tensor): (B, N, Dg) textual patches (the mixture).
        concepts (Tensor): (B, K, Dg) unit concept vectors.
        pair_idx (Tensor): (B, M) into the flattened (N, K) affinity, at
            most one pair per patch among the ``pair_ok`` ones.
        pair_ok (Tensor): (B, M) bool; other pairs write nothing.

    Returns:
        Tensor: (B, N, Dg), the selected patches replaced.
    """
    B, N, Dg = textual.shape
    K = concepts.shape[1]
    vectors = concepts.gather(
        1, (pair_idx % K)[..., None].expand(-1, -1, Dg))  # (B, M, Dg)
    # Pairs that write nothing go to an extra row N, dropped after: no
    # two writes ever land on one row, so the scatter is deterministic.
    patch = torch.where(pair_ok, pair_idx // K,
                        torch.full_like(pair_idx, N))  # (B, M)
    written = torch.zeros(B, N + 1, Dg, dtype=textual.dtype,
                          device=textual.device).scatter(
        1, patch[..., None].expand(-1, -1, Dg), vectors)  # (B, N + 1, Dg)
    chosen = torch.zeros(B, N + 1, dtype=torch.bool,
                         device=textual.device).scatter(
        1, patch, True)[:, :N]  # (B, N)
    return torch.where(chosen[..., None], written[:, :N], textual)


def salient_patch_mixup(
    patch_proj: torch.Tensor,
    global_feat: torch.Tensor,
    concept_embeds: torch.Tensor,
    top_k: int = 5,
    top_m: float = 5,
    temperature: float = 0.01,
    threshold: float = 0.0,
    *,
    selection: str = 'official',
    writable: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select salient patches and build their textual replacements.

    1. Retrieve the top-K concepts by cosine(global, concept).
    2. Patch-concept affinity ``A[b, j, k] = cos(patch_proj[b, j], s_k)``.
    3. Textual patch ``t_j = sum_k softmax_k(A[b, j] / temperature) s_k``
       (a convex mixture of unit concept vectors, not re-normalised).
    4. ``selection='official'``: take the top-M entries of the flattened
       ``A`` (B, N*K); every patch appearing in them is mixed, so 1..M
       distinct patches per image (one patch may be the best match of
       several concepts). ``'per_concept'`` (ours): each concept takes one
       patch of its own (:func:`per_concept_pairs`), and that patch's
       textual patch is the concept's own vector
       (:func:`write_pair_concepts`).

    Concepts whose retrieval probability is <= ``threshold`` are left out of
    both the mixture and the selection. (The official code zeroes their
    vectors instead, which gives them affinity 0 rather than excluding them;
    with its threshold 0.0 no concept is ever dropped, so both agree.)
    Concepts ``writable`` excludes are left out in the same way.

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
        selection (str): A key of :data:`SELECTIONS`. Defaults to
            ``'official'``, the official code's rule.
        writable (Tensor, optional): (C,) bool over the bank, False for
            words that are retrieved but never written
            (:func:`writable_concepts`). Defaults to None: every word.

    Returns:
        tuple: ``textual_patches`` (B, N, Dg), ``replace_mask`` (B, N) bool,
        ``concept_idx`` (B, K) long.
    """
    B, N, _ = patch_proj.shape
    # (B, K), (B, K, Dg), (B, N, K)
    concept_idx, concepts, affinity = concept_affinity(
        patch_proj, global_feat, concept_embeds, top_k=top_k,
        temperature=temperature, threshold=threshold, writable=writable)
    weights = (affinity / temperature).softmax(dim=-1)  # (B, N, K)
    weights = weights.nan_to_num(0.0)  # every concept dropped -> t_j = 0
    textual_patches = weights @ concepts  # (B, N, Dg)

    K = concept_idx.shape[1]
    pair_idx, pair_ok = choose_pairs(affinity, top_m,
                                     selection)  # (B, M) x2
    if selection == 'per_concept':
        textual_patches = write_pair_concepts(
            textual_patches, concepts, pair_idx, pair_ok)  # (B, N, Dg)
    patch_of_pair = F.one_hot(pair_idx // K, N).bool()  # (B, M, N)
    # Pairs of dropped concepts (affinity -inf) must not select their patch.
    replace_mask = (patch_of_pair & pair_ok[..., None]).any(dim=1)  # (B, N)
    return textual_patches, replace_mask, concept_idx
