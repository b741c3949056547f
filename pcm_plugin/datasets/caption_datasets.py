"""Datasets of precomputed CLIP features with captions.

Both read the project's JSON annotation files (mmengine ``BaseDataset``
layout, see ``docs/architecture.md``) and give every sample the
``feature_dir`` of their feature store (the ``feature_dir`` argument), the
way image datasets give ``LoadImageFromFile`` an ``img_path``.
"""
import json
import os.path as osp
import random
from typing import List

from mmengine.dataset import BaseDataset

from pcm_plugin.registry import DATASETS

from .feature_store import open_feature_store


def _check_ann_file(ann_file: str) -> None:
    if not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'annotation file {ann_file} not found: create it with '
            'tools/data/convert_karpathy.py (or fix `ann_file`)')


class _FeatureCaptionDataset(BaseDataset):
    """Shared loading: annotation entries joined with a feature store."""

    def __init__(self, *, ann_file: str, feature_dir: str, **kwargs):
        _check_ann_file(ann_file)
        self.feature_dir = feature_dir
        super().__init__(ann_file=ann_file, **kwargs)

    def parse_data_info(self, raw: dict) -> dict:
        if 'image_id' not in raw:
            raise KeyError(f'{self.ann_file}: entry {raw} has no `image_id`')
        # A refined entry (tools/refine_pairs.py) names the store of its
        # re-assigned image and that pair's own CLIP cosine.
        info = dict(image_id=str(raw['image_id']),
                    feature_dir=raw.get('feature_dir', self.feature_dir))
        if raw.get('clip_cos') is not None:
            info['clip_cos'] = float(raw['clip_cos'])
        if raw.get('caption') is not None:
            if not any(ch.isalnum() for ch in str(raw['caption'])):
                raise ValueError(
                    f'{self.ann_file}: image {raw["image_id"]} has an empty '
                    f'or punctuation-only caption {raw["caption"]!r}; fix '
                    'or drop that entry (tools/data/convert_*.py reject '
                    'such captions)')
            info['gt_caption'] = raw['caption']
        return info

    def load_data_list(self) -> List[dict]:
        try:
            data_list = super().load_data_list()
        except ValueError as err:  # json.JSONDecodeError names no file
            if not isinstance(err, json.JSONDecodeError):
                raise
            raise ValueError(
                f'annotation file {self.ann_file} is not valid JSON ({err}); '
                'it is truncated or damaged: write it again with '
                'tools/data/convert_*.py') from None
        for feature_dir in sorted({d['feature_dir'] for d in data_list}):
            store = open_feature_store(feature_dir)
            missing = [d['image_id'] for d in data_list
                       if d['feature_dir'] == feature_dir and
                       d['image_id'] not in store]
            if missing:
                raise KeyError(
                    f'{len(missing)} of {len(data_list)} image ids of '
                    f'{self.ann_file} have no features in {feature_dir} '
                    f'(e.g. {missing[:3]}); run tools/extract_features.py '
                    'on this annotation file')
        return data_list


@DATASETS.register_module()
class SynthCaptionDataset(_FeatureCaptionDataset):
    """Training pairs: one synthetic image's features per caption.

    Args:
        ann_file (str): Train annotation JSON (``image_id``, ``caption``;
            refined files from ``tools/refine_pairs.py`` add each pair's
            ``feature_dir`` and ``clip_cos``, which take precedence).
        feature_dir (str): Feature store of the synthetic images; its
            ``.cos.npy`` holds the CLIP image-caption cosines.
        data_fraction (float): Keep a seeded fraction r of the pairs while
            keeping the number of optimiser steps (docs/method.md §6.4): the
            dataset still reports the full length and cycles the subset,
            like the official code dividing the epoch length by r.
            Defaults to 1.0.
        fraction_seed (int): Seed of the subset choice. Defaults to 1234.
        **kwargs: ``pipeline``, ``test_mode``, ... of ``BaseDataset``.
    """

    def __init__(self, *, ann_file: str, feature_dir: str,
                 data_fraction: float = 1.0, fraction_seed: int = 1234,
                 **kwargs):
        if not 0 < data_fraction <= 1:
            raise ValueError(
                f'data_fraction must be in (0, 1], got {data_fraction}')
        self.data_fraction, self.fraction_seed = data_fraction, fraction_seed
        super().__init__(ann_file=ann_file, feature_dir=feature_dir, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        self.full_length = len(data_list)
        if self.data_fraction < 1:
            order = list(range(len(data_list)))
            random.Random(self.fraction_seed).shuffle(order)
            keep = max(1, int(self.data_fraction * len(data_list)))
            data_list = [data_list[i] for i in sorted(order[:keep])]
        return data_list

    def __len__(self) -> int:
        return self.full_length if self.data_fraction < 1 else \
            super().__len__()

    def get_data_info(self, idx: int) -> dict:
        # Cycle the kept subset so an epoch has the full-data step count.
        if self.data_fraction < 1:
            idx %= super().__len__()
        return super().get_data_info(idx)


@DATASETS.register_module()
class CaptionFeatureDataset(_FeatureCaptionDataset):
    """Evaluation images (real photos): one entry per image.

    Args:
        ann_file (str): Val/test annotation JSON (``image_id`` int-like).
        feature_dir (str): Feature store of the real images.
        **kwargs: ``pipeline``, ``test_mode``, ... of ``BaseDataset``.
    """

    def parse_data_info(self, raw: dict) -> dict:
        info = super().parse_data_info(raw)
        info.pop('gt_caption', None)  # references live in the metric's gt
        return info


@DATASETS.register_module()
class CaptionImageDataset(BaseDataset):
    """Evaluation images read from their files, for a model that runs CLIP
    itself (``model.image_encoder``; pipeline ``LoadCLIPImage`` +
    ``PackCaptionInputs``): no features to extract first.

    Args:
        ann_file (str): Val/test annotation JSON whose entries have
            ``image_id`` and ``file_name``.
        image_dir (str): Root the ``file_name`` entries are relative to.
        **kwargs: ``pipeline``, ``test_mode``, ... of ``BaseDataset``.
    """

    def __init__(self, *, ann_file: str, image_dir: str, **kwargs):
        _check_ann_file(ann_file)
        self.image_dir = image_dir
        super().__init__(ann_file=ann_file, **kwargs)

    def parse_data_info(self, raw: dict) -> dict:
        if 'image_id' not in raw or not raw.get('file_name'):
            raise KeyError(f'{self.ann_file}: entry {raw} needs `image_id` '
                           'and `file_name` (the image to read)')
        return dict(image_id=str(raw['image_id']),
                    img_path=osp.join(self.image_dir, raw['file_name']))
