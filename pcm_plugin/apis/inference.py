"""Caption any image: open_clip features -> a trained PCM-Net checkpoint.

The features are computed exactly as ``tools/extract_features.py`` computes
them for the test sets (patch tokens before ``ln_post``, pooled for
ViT-L/14, and the projected global embedding), so a model sees the same
inputs it was evaluated on.
"""
import os.path as osp
from typing import List, Optional, Sequence, Union

import torch
from mmengine.config import Config


class ImageCaptioner:
    """Load a PCM-Net checkpoint and the CLIP it was trained with.

    Args:
        config (str | Config): The model's config (e.g.
            ``configs/pcm_coco.py``), or a released model folder
            (``tools/publish_model.py``).
        checkpoint (str, optional): A checkpoint written by
            ``tools/train.py`` (``.pth``) or a release's ``.safetensors``.
            Defaults to the release's weights when ``config`` is a folder.
        clip_model (str, optional): open_clip model name. Defaults to the
            config's ``clip_model.name``.
        clip_checkpoint (str, optional): Local open_clip weights. Defaults
            to the config's ``clip_model.checkpoint``.
        pretrained (str, optional): An open_clip tag already in the local
            cache, instead of ``clip_checkpoint``.
        model_config (str, optional): open_clip JSON config of a custom
            model (e.g. the mini CLIP of the demo).
        device (str): Torch device. Defaults to ``'cpu'``.
        beam_size (int, optional): Overrides the decoder's beam size.

    Example:
        >>> captioner = ImageCaptioner('configs/pcm_coco.py', 'best.pth')
        >>> captioner(['demo/dog.jpg'])
        ['a dog running on the beach']
    """

    def __init__(self, config: Union[str, Config],
                 checkpoint: Optional[str] = None, *,
                 clip_model: Optional[str] = None,
                 clip_checkpoint: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 model_config: Optional[str] = None, device: str = 'cpu',
                 beam_size: Optional[int] = None):
        from mmengine.runner import load_checkpoint

        import pcm_plugin  # noqa: F401  registers the components
        from pcm_plugin.data_prep.clip_features import (
            load_open_clip,
            resolve_pool,
        )
        from pcm_plugin.engine.checkpoint import check_checkpoint_matches
        from pcm_plugin.registry import MODELS
        if isinstance(config, str) and osp.isdir(config):
            from .release import resolve_release
            config, weights = resolve_release(config)
            checkpoint = checkpoint or weights
        if checkpoint is None:
            raise ValueError('ImageCaptioner needs a checkpoint, or a '
                             'released model folder as `config`')
        cfg = config if isinstance(config, Config) else Config.fromfile(
            config)
        clip_cfg = cfg.get('clip_model', {}) or {}
        clip_model = clip_model or clip_cfg.get('name')
        if clip_model is None:
            raise ValueError('which open_clip model extracted the features? '
                             'Pass clip_model (or --clip-model), or set '
                             '`clip_model = dict(name=..., checkpoint=...)` '
                             'in the config')
        if not pretrained:
            clip_checkpoint = clip_checkpoint or clip_cfg.get('checkpoint')
        model_config = model_config or clip_cfg.get('model_config')
        self.clip, self.preprocess, _ = load_open_clip(
            clip_model, checkpoint=clip_checkpoint, pretrained=pretrained,
            model_config=model_config, device=device)
        self.pool = resolve_pool(tuple(self.clip.visual.grid_size),
                                 clip_cfg.get('pool', 'auto'))
        self.model = MODELS.build(cfg.model)
        check_checkpoint_matches(self.model, checkpoint)
        load_checkpoint(self.model, checkpoint, map_location='cpu',
                        logger='silent')
        self.model.to(device).eval()
        self.device, self.beam_size = device, beam_size

    @torch.no_grad()
    def features(self, images: Sequence) -> dict:
        """CLIP inputs of the captioner for image paths or PIL images."""
        from pcm_plugin.data_prep.clip_features import extract_batch
        from pcm_plugin.data_prep.image_io import load_rgb_image
        pil = [load_rgb_image(im) if isinstance(im, str) else im.convert(
            'RGB') for im in images]
        batch = torch.stack([self.preprocess(im) for im in pil])
        patch, global_feat = extract_batch(self.clip, batch.to(self.device),
                                           pool=self.pool)
        return dict(patch_feats=patch.to(self.device),
                    global_feat=global_feat.to(self.device))

    def __call__(self, images: Sequence, batch_size: int = 16) -> List[str]:
        """Captions for image paths and/or PIL images, in input order."""
        captions: List[str] = []
        for start in range(0, len(images), batch_size):
            inputs = self.features(images[start:start + batch_size])
            captions += self.model.generate(inputs, beam_size=self.beam_size)
        return captions
