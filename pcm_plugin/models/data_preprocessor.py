"""The captioner's data preprocessor: batch, device, float32, finite."""
from typing import Dict, List, Optional

import torch
from mmengine.model import BaseDataPreprocessor
from mmpretrain.structures import DataSample

from pcm_plugin.registry import MODELS

INPUT_KEYS = ('patch_feats', 'global_feat')
IMAGE_KEYS = ('images', )  # with model.image_encoder: (B, 3, I, I)


@MODELS.register_module()
class CaptionFeaturePreprocessor(BaseDataPreprocessor):
    """Stack per-sample feature tensors, move them to the model's device,
    make them float32 there, and refuse non-finite features.

    Accepts both ``default_collate`` batches (tensors already stacked) and
    mmengine's ``pseudo_collate`` ones (lists of per-sample tensors). The
    cast follows the move, as in mmpretrain's ``ClsDataPreprocessor``:
    float16 features from the store (``LoadCLIPFeatures``) cross to a GPU
    at half the bytes, and widening float16 to float32 is exact, so the
    model sees the values that a float32 loader would give it. The data
    samples are passed on unmoved: they hold no tensors (captions, ids,
    cosines), and ``DataSample.to`` would copy each one for nothing.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        keys = IMAGE_KEYS if 'images' in first else INPUT_KEYS
        if isinstance(inputs, (list, tuple)):  # pseudo_collate of dicts
            inputs = {k: [x[k] for x in inputs] for k in keys}
        stacked = {}
        for key in keys:
            value = inputs[key]
            if isinstance(value, (list, tuple)):
                value = torch.stack(value)
            stacked[key] = self.cast_data(value).float()
        samples = data.get('data_samples')
        if keys == INPUT_KEYS:
            check_finite(stacked, samples)
        return dict(inputs=stacked, data_samples=samples)


def check_finite(inputs: Dict[str, torch.Tensor],
                 data_samples: Optional[List[DataSample]] = None) -> None:
    """Refuse a batch of features holding NaN or Inf, naming its images.

    NaN features train a NaN model that captions nothing: the batch stops
    here, checked once per batch (not per sample in the data loader).

    Args:
        inputs (dict): float32 ``patch_feats`` (B, N, Dv) and
            ``global_feat`` (B, Dg).
        data_samples (list[DataSample], optional): Their ``image_id`` and
            ``feature_dir`` metainfo name the bad images.

    Raises:
        ValueError: Naming the images, their feature store and the fix.
    """
    rows = [inputs[k].flatten(1) for k in INPUT_KEYS]  # (B, N*Dv), (B, Dg)
    # A float32 sum is NaN or Inf wherever a value is (an element-wise
    # isfinite costs many times more on CPU); a finite sum overflows only with
    # huge values (~1e34 at the COCO size), so the exact test below
    # confirms before raising. On a GPU, bool() is one sync per batch.
    if bool(torch.isfinite(sum(r.sum(1) for r in rows)).all()):
        return
    bad = ~torch.stack([torch.isfinite(r).all(1) for r in rows]).all(0)
    samples = data_samples if data_samples is not None else [None] * len(bad)
    by_dir: Dict[str, List[str]] = {}
    for pos in bad.nonzero().flatten().tolist():
        meta = samples[pos] if samples[pos] is not None else DataSample()
        feature_dir = meta.get('feature_dir', 'the feature store')
        by_dir.setdefault(feature_dir, []).append(
            str(meta.get('image_id', f'at batch position {pos}')))
    if by_dir:
        named = '; '.join(
            f'{d}: the features of image'
            + (f' {ids[0]}' if len(ids) == 1 else f's {", ".join(ids)}')
            + ' are not finite (NaN/Inf)' for d, ids in by_dir.items())
        raise ValueError(
            f'{named}; re-extract them with tools/extract_features.py or '
            'drop those images from the annotation file')
