"""open_clip image features in PCM-Net's layout (docs/method.md §2.2).

PCM-Net needs the patch tokens of the last transformer block *before*
``ln_post``: PCM later applies CLIP's ``ln_post`` + ``proj`` itself to every
patch (docs/method.md §3.2). open_clip's ``output_tokens`` are taken after
``ln_post``, so a forward pre-hook on ``ln_post`` captures its input, the
(B, 1 + G*G, W) output of the last block, during the ordinary
``encode_image`` call; the global feature is that call's result,
``ln_post(CLS) @ proj``, not normalised. Grids of 16x16 (ViT-L/14) are
average-pooled 2x2 to 8x8 before any LayerNorm.
"""
import json
import os
import os.path as osp
import pickle
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

PRECISIONS = ('fp32', 'fp16', 'bf16')


def register_model_config(path: str) -> str:
    """Make an open_clip config JSON known by its file stem; return it."""
    import open_clip  # deferred: open_clip loads only where CLIP runs
    if not osp.isfile(path):
        raise FileNotFoundError(f'--model-config {path} not found')
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f'--model-config {path}: invalid JSON ({err})'
                         ) from None
    missing = [k for k in ('embed_dim', 'vision_cfg', 'text_cfg')
               if k not in config]
    if missing:
        raise ValueError(f'--model-config {path}: not an open_clip model '
                         f'config (no {missing})')
    open_clip.add_model_config(path)
    return osp.splitext(osp.basename(path))[0]


def _checkpoint_error(checkpoint: str, name: str, err: Exception):
    detail = ' '.join(str(err).split('\n')[:3])[:600]
    return ValueError(
        f'checkpoint {checkpoint} does not fit open_clip model {name!r} '
        f'({type(err).__name__}: {detail}); pass the --clip-model the '
        'checkpoint was trained with (and --model-config for custom '
        'configs)')


def load_open_clip(model_name: str, *, checkpoint: Optional[str] = None,
                   pretrained: Optional[str] = None,
                   model_config: Optional[str] = None,
                   cache_dir: Optional[str] = None, device: str = 'cpu',
                   precision: str = 'fp32'):
    """Build an open_clip model from local weights only.

    Args:
        model_name (str): open_clip model name (e.g. ``'ViT-B-32'``).
        checkpoint (str, optional): Local weights file.
        pretrained (str, optional): An open_clip tag (e.g. ``'openai'``)
            whose weights are already in the local cache.
        model_config (str, optional): JSON config to register first.
        cache_dir (str, optional): open_clip/HF cache for ``pretrained``.
        device (str): Torch device.
        precision (str): ``'fp32'``, ``'fp16'`` or ``'bf16'``.

    Returns:
        tuple: ``(model, preprocess, tokenizer)``, model in eval mode.
    """
    import open_clip  # deferred: open_clip loads only where CLIP runs
    if model_config:
        register_model_config(model_config)
    if precision not in PRECISIONS:
        raise ValueError(f'--dtype {precision!r}: choose from {PRECISIONS}')
    if bool(checkpoint) == bool(pretrained):
        raise ValueError('give exactly one of --clip-checkpoint (a local '
                         'file) and --pretrained (a cached open_clip tag)')
    if model_name not in open_clip.list_models():
        raise ValueError(f'unknown open_clip model {model_name!r}; register '
                         'a custom one with --model-config <name>.json')
    if checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'--clip-checkpoint {checkpoint} not found')
    if pretrained and not open_clip.get_pretrained_cfg(model_name,
                                                        pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f'--pretrained {pretrained!r} is not an open_clip '
                         f'tag of {model_name} (known: {tags})')
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=checkpoint or pretrained,
            precision=precision, device=device, cache_dir=cache_dir)
    except (RuntimeError, ValueError, KeyError, EOFError,
            pickle.UnpicklingError, OSError) as err:
        if checkpoint:
            raise _checkpoint_error(checkpoint, model_name, err) from err
        raise FileNotFoundError(
            f'open_clip weights {model_name}/{pretrained} are not in the '
            f'local cache ({cache_dir or "default cache"}) and downloads '
            f'are off (HF_HUB_OFFLINE={os.environ.get("HF_HUB_OFFLINE")}); '
            'copy them there from a machine with network, or pass the file '
            f'with --clip-checkpoint ({err})') from err
    check_vit_layout(model, model_name)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


def load_open_clip_text_model(model_name: str,
                              checkpoint: Optional[str] = None,
                              model_config: Optional[str] = None, *,
                              pretrained: Optional[str] = None,
                              cache_dir: Optional[str] = None
                              ) -> Tuple[object, object]:
    """An open_clip model (eval mode, CPU) and its tokenizer.

    For concept banks and CLIPScore. Loading is :func:`load_open_clip`'s,
    shared with feature extraction: local weights only, clear errors for a
    missing file or a checkpoint of another architecture.

    Args:
        model_name (str): An open_clip model name, e.g. ``'ViT-B-32'``.
        checkpoint (str, optional): Local weights file.
        model_config (str, optional): A JSON model config to register first
            (its file stem must equal ``model_name``).
        pretrained (str, optional): An open_clip tag whose weights are
            already in the local cache (instead of ``checkpoint``).
        cache_dir (str, optional): Cache holding ``pretrained`` weights.

    Returns:
        tuple: ``(model, tokenizer)``.
    """
    if model_config is not None:
        stem = osp.splitext(osp.basename(model_config))[0]
        if stem != model_name:
            raise ValueError(f'--model-config {model_config} registers model '
                             f'{stem!r}, but --clip-model is {model_name!r}')
    model, _, tokenizer = load_open_clip(
        model_name, checkpoint=checkpoint, pretrained=pretrained,
        model_config=model_config, cache_dir=cache_dir)
    return model, tokenizer


def clip_preprocess(model_name: str, model_config: Optional[str] = None, *,
                    pretrained: Optional[str] = None):
    """open_clip's evaluation preprocessing of ``model_name``, built from
    its config (no weights loaded): what :func:`load_open_clip` returns as
    ``preprocess`` for a local checkpoint (plus a cached tag's mean/std).
    """
    import open_clip  # deferred: open_clip loads only where CLIP runs
    if model_config:
        register_model_config(model_config)
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f'unknown open_clip model {model_name!r}; register '
                         'a custom one with its JSON model_config')
    settings = dict(cfg.get('preprocess_cfg', {}))
    if pretrained:
        tag = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
        settings.update({k: tag[k] for k in ('mean', 'std') if k in tag})
    settings['size'] = cfg['vision_cfg']['image_size']
    return preprocess_transform(settings)


def preprocess_transform(settings: Dict) -> Callable:
    """open_clip's evaluation transform for its preprocessing settings.

    Args:
        settings (dict): ``PreprocessCfg`` fields (size, mean, std, ...),
            e.g. a loaded model's ``visual.preprocess_cfg``, from which
            open_clip builds the ``preprocess`` it returns.

    Returns:
        Callable: PIL image -> (3, I, I) float tensor.
    """
    # deferred: open_clip loads only where CLIP runs
    from open_clip.transform import PreprocessCfg, image_transform_v2
    return image_transform_v2(PreprocessCfg(**settings), is_train=False)


def check_vit_layout(model, name: str) -> None:
    """Refuse image towers whose ``ln_post`` input is not (B, 1+N, W)."""
    # deferred: open_clip loads only where CLIP runs
    from open_clip.transformer import VisionTransformer
    visual = getattr(model, 'visual', None)
    if not isinstance(visual, VisionTransformer):
        raise ValueError(
            f'open_clip model {name!r}: image tower '
            f'{type(visual).__name__} is not a ViT; PCM-Net features need a '
            'CLS-token ViT (e.g. ViT-B-32, ViT-L-14)')
    if (visual.attn_pool is not None or visual.pool_type != 'tok'
            or visual.final_ln_after_pool):
        raise ValueError(
            f'open_clip model {name!r}: the ViT pools with attention, '
            'averages, or applies ln_post after pooling; PCM-Net features '
            'need CLS-token pooling with ln_post on all tokens')


def resolve_pool(grid: Tuple[int, int], pool: Union[str, int]) -> int:
    """Pooling factor: ``'auto'`` pools 16x16 (ViT-L/14) grids by 2."""
    if pool in ('auto', None):
        return 2 if tuple(grid) == (16, 16) else 1
    pool = int(pool)
    if pool < 1 or grid[0] % pool or grid[1] % pool:
        raise ValueError(f'--pool {pool} does not divide the {grid[0]}x'
                         f'{grid[1]} token grid')
    return pool


def pool_patch_grid(patch: torch.Tensor, grid: Tuple[int, int],
                    pool: int) -> torch.Tensor:
    """Average-pool row-major patch tokens on their grid.

    Args:
        patch (Tensor): (B, gh * gw, Dv) tokens, row-major.
        grid (tuple): ``(gh, gw)``, the tower's token grid.
        pool (int): Window and stride.

    Returns:
        Tensor: (B, N, Dv) with N = gh * gw / pool**2, still row-major.
    """
    if pool == 1:
        return patch
    batch, _, width = patch.shape
    x = patch.transpose(1, 2).reshape(batch, width, *grid)  # (B, Dv, gh, gw)
    x = F.avg_pool2d(x, pool)  # (B, Dv, gh / pool, gw / pool)
    return x.flatten(2).transpose(1, 2)  # (B, N, Dv)


def encode_image_tokens(model, images: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tokens entering ``ln_post`` and the image embedding, in one pass.

    Args:
        model: An open_clip CLIP model with a ViT image tower.
        images (Tensor): (B, 3, I, I) preprocessed images.

    Returns:
        tuple: (B, 1 + gh * gw, Dv) tokens (CLS first, then the tower's
        gh x gw grid) and (B, Dg) embeddings.
    """
    captured = []
    hook = model.visual.ln_post.register_forward_pre_hook(
        lambda module, args: captured.append(args[0]))
    try:
        global_feat = model.encode_image(images)  # (B, Dg)
    finally:
        hook.remove()
    tokens = captured[0]  # (B, 1 + gh * gw, Dv)
    grid = tuple(model.visual.grid_size)
    expected = (images.shape[0], 1 + grid[0] * grid[1])
    if tuple(tokens.shape[:2]) != expected:
        raise RuntimeError(f'ln_post received {tuple(tokens.shape)}, '
                           f'expected {expected} + (width,): unsupported '
                           'open_clip ViT variant')
    return tokens, global_feat


@torch.no_grad()
def extract_batch(model, images: torch.Tensor, *, pool: int
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """PCM-Net features of a batch: (B, N, Dv) patches and (B, Dg) global.

    Both are returned as float32 on the CPU.
    """
    tokens, global_feat = encode_image_tokens(model, images)
    grid = tuple(model.visual.grid_size)
    patch = pool_patch_grid(tokens[:, 1:].float(), grid, pool)  # (B, N, Dv)
    return patch.cpu(), global_feat.float().cpu()


@torch.no_grad()
def caption_cosine(model, tokenizer, global_feat: torch.Tensor,
                   captions: Sequence[Optional[str]]) -> torch.Tensor:
    """cos(image embedding, caption embedding); NaN where no caption.

    Args:
        global_feat (Tensor): (B, Dg) image embeddings (any device).
        captions (Sequence): One caption or None per image.

    Returns:
        Tensor: (B,) float32 on the CPU.
    """
    cos = torch.full((len(captions),), float('nan'))
    rows = [i for i, c in enumerate(captions) if c is not None]
    if not rows:
        return cos
    device = next(model.parameters()).device
    # B' of the B images have a caption.
    text = tokenizer([captions[i] for i in rows]).to(device)  # (B', 77)
    text_feat = model.encode_text(text).float().cpu()  # (B', Dg)
    image_feat = global_feat[rows].float().cpu()  # (B', Dg)
    cos[rows] = F.cosine_similarity(image_feat, text_feat, dim=-1)
    return cos


def feature_shapes(model, pool: int) -> Dict:
    """``patch_shape`` [N, Dv] and ``global_dim`` Dg of the store."""
    visual = model.visual
    grid = tuple(visual.grid_size)
    num = (grid[0] // pool) * (grid[1] // pool)
    width = visual.ln_post.normalized_shape[0]
    size = visual.image_size
    size = list(size) if isinstance(size, (tuple, list)) else [size, size]
    return dict(patch_shape=[num, int(width)],
                global_dim=int(visual.proj.shape[1]), grid=list(grid),
                image_size=[int(s) for s in size])
