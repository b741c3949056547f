"""What the mix-up's tests share: the selection as it was before the rules
(the reference the official rule must equal to the bit) and random
features."""
import torch


def official_before(patch_proj, global_feat, concept_embeds, *, top_k,
                    top_m, temperature, threshold):
    """salient_patch_mixup as it was before the selection rules (commit
    8ae58fa), written out in one piece with the same operations in the
    same order: on one machine its output is the same to the bit.

    Returns:
        tuple: ``textual`` (B, N, Dg), ``mask`` (B, N) bool,
        ``concept_idx`` (B, K).
    """
    def unit(x):
        return x / (x.norm(dim=-1, keepdim=True) + 1e-9)

    probs = (unit(global_feat) @ unit(concept_embeds).t()
             / temperature).softmax(dim=-1)  # (B, C)
    top_probs, concept_idx = probs.topk(top_k, dim=-1)  # (B, K) x2
    concepts = unit(concept_embeds)[concept_idx]  # (B, K, Dg)
    affinity = (unit(patch_proj) @ concepts.transpose(1, 2)).masked_fill(
        ~(top_probs > threshold)[:, None, :], float('-inf'))  # (B, N, K)
    textual = (affinity / temperature).softmax(dim=-1).nan_to_num(
        0.0) @ concepts  # (B, N, Dg)
    B, N, K = affinity.shape
    count = int(top_m * N * K) if 0 < top_m < 1 else int(top_m)
    count = max(1, min(count, N * K))
    flat = affinity.flatten(1)  # (B, N*K)
    pairs = flat.topk(count, dim=-1).indices  # (B, M)
    ok = flat.gather(1, pairs) > float('-inf')  # (B, M)
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        mask[b, pairs[b][ok[b]] // K] = True
    return textual, mask, concept_idx


def random_features(seed, batch=6, patches=49, dim=16, concepts=40):
    """(B, N, Dg) projected patches, (B, Dg) globals, (C, Dg) concepts."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, patches, dim, generator=gen),
            torch.randn(batch, dim, generator=gen),
            torch.randn(concepts, dim, generator=gen))


def tiny_mixup_cfg(tiny_clip, tiny_bank, **overrides) -> dict:
    """A PCMMixup config on the tiny CLIP (N=49, Dv=48, Dg=32) and the
    12-word tiny bank: top-3 concepts, 5 pairs, no dropout, no noise."""
    cfg = dict(type='PCMMixup', patch_dim=48, global_dim=32, num_patches=49,
               embed_dim=64, concept_bank=tiny_bank, clip_head=tiny_clip[1],
               top_k=3, top_m=5, dropout=0.0, noise_var=0.0)
    return dict(cfg, **overrides)


def tiny_features(batch=2, seed=0):
    """(B, 49, 48) raw patch tokens and (B, 32) globals for the tiny CLIP."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 49, 48, generator=gen), torch.randn(
        batch, 32, generator=gen)
