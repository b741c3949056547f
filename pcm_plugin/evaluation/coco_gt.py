"""Read and write COCO-format caption ground truth (docs/architecture.md).

The format is the one pycocotools and mmpretrain's ``COCOCaption`` metric
read::

    {"images": [{"id": 391895}],
     "annotations": [{"image_id": 391895, "id": 1, "caption": "..."}]}

Integer image ids; several annotations per image (the references).
"""
import json
import os.path as osp
from typing import Dict, List, Mapping, Sequence

from pcm_plugin.utils.fileio import atomic_write_json

__all__ = ['load_coco_gt', 'write_coco_gt']

References = Dict[int, List[str]]


def to_image_id(value, *, where: str) -> int:
    """``int(value)`` with an error that says where the bad id came from."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f'{where}: image_id {value!r} is not int-convertible; caption '
            'metrics need integer image ids (e.g. "391895", not '
            '"coco_391895")') from None


def check_references(references: Mapping, *, where: str) -> References:
    """Validate ``{image_id: [caption, ...]}`` and return it with int keys.

    Args:
        references (Mapping): Image id to its list of reference captions.
        where (str): Name of the source, used in error messages.

    Returns:
        dict: ``{int image_id: list of str}`` in the given order.
    """
    checked: References = {}
    for key, captions in references.items():
        image_id = to_image_id(key, where=where)
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise ValueError(
                f'{where}: references of image {key!r} must be a list of '
                f'strings, got {type(captions).__name__}')
        if not all(isinstance(c, str) for c in captions):
            raise ValueError(
                f'{where}: references of image {key!r} contain non-strings')
        checked.setdefault(image_id, []).extend(captions)
    return checked


def load_coco_gt(ann_file: str) -> References:
    """Load the references of a COCO-format caption gt file.

    Args:
        ann_file (str): Path of the JSON file.

    Returns:
        dict: ``{image_id: [caption, ...]}``, captions in file order (the
        order pycocotools' ``imgToAnns`` keeps). Images listed without
        annotations are left out.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'caption ground-truth file {ann_file!r} not found: check the '
            'metric\'s ann_file (a COCO-format JSON with "images" and '
            '"annotations"; pcm_plugin.evaluation.write_coco_gt writes one)')
    try:
        with open(ann_file, encoding='utf-8') as f:
            gt = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f'{ann_file} is not valid JSON: {err}') from None
    if not isinstance(gt, dict) or 'annotations' not in gt:
        raise ValueError(
            f'{ann_file} is not a COCO caption gt file: expected a JSON '
            'object with an "annotations" list of {"image_id", "id", '
            '"caption"} (a LAVIS/karpathy list of {"image", "caption"} is a '
            'dataset annotation file, not the gt)')
    references: References = {}
    for index, ann in enumerate(gt['annotations']):
        if 'image_id' not in ann or 'caption' not in ann:
            raise ValueError(f'{ann_file}: annotations[{index}] lacks '
                             '"image_id" or "caption"')
        image_id = to_image_id(ann['image_id'], where=ann_file)
        references.setdefault(image_id, []).append(ann['caption'])
    return references


def write_coco_gt(references: Mapping[int, Sequence[str]],
                  path: str) -> None:
    """Write references as a COCO-format caption gt JSON file.

    Annotation ids run from 1 in the order given. The file is written to a
    temporary name first and moved into place, so a reader never sees half
    a file.

    Args:
        references (Mapping[int, Sequence[str]]): Image id (int-convertible)
            to its reference captions.
        path (str): Output path; parent directories are created.
    """
    checked = check_references(references, where='write_coco_gt')
    images = [{'id': image_id} for image_id in checked]
    annotations = []
    for image_id, captions in checked.items():
        for caption in captions:
            annotations.append({
                'image_id': image_id,
                'id': len(annotations) + 1,
                'caption': caption
            })
    atomic_write_json(path, {'images': images, 'annotations': annotations},
                      indent=None)
