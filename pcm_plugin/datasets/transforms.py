"""Pipeline transforms: read CLIP features, pack model inputs."""
import math
from typing import Optional

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from pcm_plugin.clip.clip_features import (
    clip_preprocess,
    preprocess_transform,
)
from pcm_plugin.clip.image_io import as_rgb_image, load_rgb_image
from pcm_plugin.registry import TRANSFORMS

from .feature_store import open_feature_store


@TRANSFORMS.register_module()
class LoadCLIPFeatures(BaseTransform):
    """Read an image's precomputed CLIP features from a feature store.

    The features stay float16, as stored, unless ``to_float32`` (in the
    manner of mmcv's ``LoadImageFromFile(to_float32=...)``): the model's
    ``CaptionFeaturePreprocessor`` casts the whole batch to float32 on the
    model's device, which is exact, so the model sees the same values
    either way, and the loader copies and collates half the bytes. That
    preprocessor also refuses non-finite (NaN/Inf) features, once per
    batch, naming the images and their ``feature_dir``.

    **Required Keys:**

    - image_id
    - feature_dir (set by the dataset from its ``feature_dir`` argument)

    **Added Keys:**

    - patch_feats (np.ndarray, (N, Dv) float16, float32 with to_float32)
    - global_feat (np.ndarray, (Dg,) float16, float32 with to_float32)
    - clip_cos (float, NaN when the store has no caption cosine; kept
      when the annotation entry already gave one)

    Args:
        to_float32 (bool): Convert the features to float32 here, per
            sample. Defaults to False.
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32

    def transform(self, results: dict) -> dict:
        if 'feature_dir' not in results or 'image_id' not in results:
            # mmpretrain.inference_model feeds image files through the
            # test pipeline; this model's reads stored CLIP features.
            raise ValueError(
                'LoadCLIPFeatures reads CLIP features from a feature store '
                '(image_id and feature_dir, set by the dataset); this input '
                f'has {sorted(results)}. To caption image files use '
                'pcm_plugin.apis.PCMCaptionInferencer or ImageCaptioner '
                '(or tools/caption_image.py), not mmpretrain.inference_model')
        item = open_feature_store(results['feature_dir']).get(
            results['image_id'],
            dtype=np.float32 if self.to_float32 else None)
        results['patch_feats'] = item['patch']
        results['global_feat'] = item['global_feat']
        # A refined pair carries its own cosine (its caption is not the
        # one the store's cosine was computed with).
        results.setdefault('clip_cos', item['clip_cos'])
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32})'


@TRANSFORMS.register_module()
class PackCaptionInputs(BaseTransform):
    """Pack features and caption into ``inputs`` and a ``DataSample``.

    **Required Keys:**

    - patch_feats, global_feat, image_id
    - gt_caption (optional), clip_cos (optional)

    **Added Keys:**

    - inputs (dict): ``patch_feats`` (N, Dv) and ``global_feat`` (Dg,)
      tensors, or ``images`` (3, I, I) after :class:`LoadCLIPImage`.
    - data_samples (DataSample): ``gt_caption`` as a data field;
      ``image_id``, ``clip_cos``, ``feature_dir`` and ``img_path`` as
      metainfo.

    The features keep their dtype (float16 from :class:`LoadCLIPFeatures`):
    the model's data preprocessor makes them float32.
    """

    def transform(self, results: dict) -> dict:
        if 'images' in results:  # LoadCLIPImage: the model runs CLIP
            inputs = dict(images=results['images'])
        else:
            inputs = dict(patch_feats=_tensor(results['patch_feats']),
                          global_feat=_tensor(results['global_feat']))
        sample = DataSample()
        meta = dict(image_id=results['image_id'])
        # feature_dir names bad features; img_path the file a result is for
        for key in ('feature_dir', 'img_path'):
            if key in results:
                meta[key] = results[key]
        clip_cos = results.get('clip_cos')
        if clip_cos is not None and not math.isnan(clip_cos):
            meta['clip_cos'] = float(clip_cos)
        for name, value in meta.items():
            # set_metainfo would deep-copy these immutable values first:
            # a tenth of a sample's loading time.
            sample.set_field(value, name, field_type='metainfo')
        if results.get('gt_caption') is not None:
            sample.gt_caption = results['gt_caption']
        return dict(inputs=inputs, data_samples=sample)


def _tensor(value) -> torch.Tensor:
    """A tensor sharing ``value``'s memory (no copy) where it can."""
    # from_numpy costs a third of as_tensor's dispatch, per array.
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return torch.as_tensor(value)


@TRANSFORMS.register_module()
class LoadCLIPImage(BaseTransform):
    """Read ``img_path`` and preprocess it exactly as the named CLIP does.

    For models with ``image_encoder`` (end to end, no precomputed
    features) and the inferencer. The preprocessing is open_clip's own
    (resize the short side, centre crop, normalise): for the model's config
    (``clip_model``; a cached ``pretrained`` tag may set other mean/std),
    without loading its weights, or given as open_clip's settings
    (``preprocess``: the inferencer passes its image encoder's).

    **Required Keys:** img_path, or rgb_image (an in-memory image: a PIL
    image or an (H, W, 3) RGB array). **Added Keys:** images (3, I, I)
    float.

    Args:
        clip_model (str, optional): open_clip model name.
        model_config (str, optional): Custom open_clip JSON config.
        pretrained (str, optional): The open_clip tag whose mean/std apply.
        preprocess (dict, optional): open_clip ``PreprocessCfg`` settings,
            e.g. ``OpenCLIPImageEncoder.preprocess_cfg``, instead of
            ``clip_model``.
    """

    def __init__(self, *, clip_model: Optional[str] = None,
                 model_config: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 preprocess: Optional[dict] = None) -> None:
        if (clip_model is None) == (preprocess is None):
            raise ValueError('LoadCLIPImage takes clip_model= (an open_clip '
                             'model name) or preprocess= (its settings), '
                             'one of them')
        self.preprocess = preprocess_transform(preprocess) if preprocess \
            else clip_preprocess(clip_model, model_config,
                                 pretrained=pretrained)

    def transform(self, results: dict) -> dict:
        image = results.get('rgb_image')
        image = load_rgb_image(results['img_path']) if image is None else \
            as_rgb_image(image)
        results['images'] = self.preprocess(image)  # (3, I, I)
        return results
