"""Pipeline transforms: read CLIP features, pack model inputs."""
import math
from typing import Optional

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from pcm_plugin.registry import TRANSFORMS

from .feature_store import open_feature_store


@TRANSFORMS.register_module()
class LoadCLIPFeatures(BaseTransform):
    """Read an image's precomputed CLIP features from a feature store.

    **Required Keys:**

    - image_id
    - feature_dir (set by the dataset from its ``feature_dir`` argument)

    **Added Keys:**

    - patch_feats (np.ndarray, (N, Dv) float32)
    - global_feat (np.ndarray, (Dg,) float32)
    - clip_cos (float, NaN when the store has no caption cosine; kept
      when the annotation entry already gave one)
    """

    def transform(self, results: dict) -> dict:
        item = open_feature_store(results['feature_dir']).get(
            results['image_id'])
        if not (np.isfinite(item['patch']).all()
                and np.isfinite(item['global_feat']).all()):
            # NaN features train a NaN model and caption nothing: stop.
            raise ValueError(
                f'{results["feature_dir"]}: the features of image '
                f'{results["image_id"]} are not finite (NaN/Inf); '
                're-extract them with tools/extract_features.py or drop '
                'the image from the annotation file')
        results['patch_feats'] = item['patch']
        results['global_feat'] = item['global_feat']
        # A refined pair carries its own cosine (its caption is not the
        # one the store's cosine was computed with).
        results.setdefault('clip_cos', item['clip_cos'])
        return results


@TRANSFORMS.register_module()
class PackCaptionInputs(BaseTransform):
    """Pack features and caption into ``inputs`` and a ``DataSample``.

    **Required Keys:**

    - patch_feats, global_feat, image_id
    - gt_caption (optional), clip_cos (optional)

    **Added Keys:**

    - inputs (dict): ``patch_feats`` (N, Dv) and ``global_feat`` (Dg,)
      float tensors, or ``images`` (3, S, S) after :class:`LoadCLIPImage`.
    - data_samples (DataSample): ``gt_caption`` as a data field;
      ``image_id`` and ``clip_cos`` as metainfo.
    """

    def transform(self, results: dict) -> dict:
        if 'images' in results:  # LoadCLIPImage: the model runs CLIP
            inputs = dict(images=results['images'])
        else:
            inputs = dict(
                patch_feats=torch.as_tensor(results['patch_feats']).float(),
                global_feat=torch.as_tensor(results['global_feat']).float())
        sample = DataSample()
        meta = dict(image_id=results['image_id'])
        clip_cos = results.get('clip_cos')
        if clip_cos is not None and not math.isnan(clip_cos):
            meta['clip_cos'] = float(clip_cos)
        sample.set_metainfo(meta)
        if results.get('gt_caption') is not None:
            sample.gt_caption = results['gt_caption']
        return dict(inputs=inputs, data_samples=sample)


@TRANSFORMS.register_module()
class LoadCLIPImage(BaseTransform):
    """Read ``img_path`` and preprocess it exactly as the named CLIP does.

    For models with ``image_encoder`` (end to end, no precomputed
    features). The preprocessing is open_clip's own for the model's config
    (resize the short side, centre crop, normalise; a cached ``pretrained``
    tag may set other mean/std), without loading its weights.

    **Required Keys:** img_path. **Added Keys:** images (3, S, S) float.

    Args:
        clip_model (str): open_clip model name.
        model_config (str, optional): Custom open_clip JSON config.
        pretrained (str, optional): The open_clip tag whose mean/std apply.
    """

    def __init__(self, *, clip_model: str,
                 model_config: Optional[str] = None,
                 pretrained: Optional[str] = None) -> None:
        from pcm_plugin.data_prep.clip_features import clip_preprocess
        self.preprocess = clip_preprocess(clip_model, model_config,
                                          pretrained=pretrained)

    def transform(self, results: dict) -> dict:
        from pcm_plugin.data_prep.image_io import load_rgb_image
        results['images'] = self.preprocess(
            load_rgb_image(results['img_path']))  # (3, S, S)
        return results
