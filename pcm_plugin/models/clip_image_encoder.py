"""The frozen CLIP image tower inside the model, for image inputs.

PCM-Net trains and tests on precomputed CLIP features; a user who would
rather give images sets ``model.image_encoder`` and the captioner runs the
tower itself, with exactly the code of ``tools/extract_features.py``
(tokens before ``ln_post``, pooled for ViT-L/14, projected global
embedding), so the captions equal the feature path's (test). The tower is
frozen and kept out of the state dict: checkpoints stay the feature
model's, and any feature-trained checkpoint loads. The inferencer
captions images through it too.
"""
from typing import Dict, Optional, Union

import torch
from mmengine.model import BaseModule

from pcm_plugin.clip.clip_features import (
    extract_batch,
    load_open_clip,
    resolve_pool,
)
from pcm_plugin.clip.release_tower import load_release_clip
from pcm_plugin.registry import MODELS


class FrozenCLIPModule(BaseModule):
    """A module running a frozen open_clip model, ``self.tower``, that
    stays out of its state dict (checkpoints are the captioner's alone)
    and follows the module's ``.to()`` and never trains."""

    def hold_tower(self, tower) -> None:
        """Keep ``tower`` frozen, in eval mode, unregistered."""
        tower.requires_grad_(False)
        self.__dict__['tower'] = tower.eval()

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.tower._apply(fn, *args, **kwargs)  # .to(device) moves it too
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.tower.eval()  # frozen: never in training mode
        return self


@MODELS.register_module()
class OpenCLIPImageEncoder(FrozenCLIPModule):
    """Images (B, 3, I, I), preprocessed as CLIP expects, to features.

    Args:
        name (str, optional): open_clip model name (the CLIP that
            extracted the training features); not needed with ``release``,
            which names its own.
        checkpoint (str, optional): Its local weights.
        pretrained (str, optional): A cached open_clip tag instead.
        model_config (str, optional): A custom open_clip JSON config.
        release (str, optional): A one-file release published
            ``--with-clip``: the tower it carries, instead of the above.
        pool (int | str): Patch pooling, ``'auto'`` as the extraction tool
            (2x2 for ViT-L/14's 16x16 grid).
    """

    def __init__(self, *, name: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 model_config: Optional[str] = None,
                 release: Optional[str] = None,
                 pool: Union[int, str] = 'auto') -> None:
        super().__init__()
        if release is not None:
            tower = load_release_clip(release)
        elif name is None:
            raise ValueError('OpenCLIPImageEncoder needs name= (the open_clip '
                             'model) or release= (a one-file release '
                             'carrying its CLIP)')
        else:
            tower, _, _ = load_open_clip(name, checkpoint=checkpoint,
                                         pretrained=pretrained,
                                         model_config=model_config)
        self.hold_tower(tower)
        self.pool = resolve_pool(tuple(tower.visual.grid_size), pool)

    @property
    def preprocess_cfg(self) -> dict:
        """The tower's open_clip preprocessing settings (size, mean, std,
        interpolation, ...): ``LoadCLIPImage(preprocess=...)`` turns an
        image into what this tower takes."""
        return dict(self.tower.visual.preprocess_cfg)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, 3, I, I) -> ``patch_feats`` (B, N, Dv), ``global_feat``
        (B, Dg), on the images' device."""
        patch, global_feat = extract_batch(self.tower, images,
                                           pool=self.pool)
        return dict(patch_feats=patch.to(images.device),
                    global_feat=global_feat.to(images.device))
