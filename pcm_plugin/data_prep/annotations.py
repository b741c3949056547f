# Copyright (c) pcm_plugin authors. MIT licence.
"""The project's annotation files and COCO-format ground truth.

Every caption source (Karpathy JSON, caption CSV, COCO captions) is first
read into a list of :class:`ImageCaptions`; this module turns such lists
into the files of ``docs/architecture.md``:

* ``train.json``: one entry per caption, keyed by the id of the synthetic
  image that caption will get (``6000000 + running index``, the official
  numbering), with the source image and caption ids kept for traceability;
* ``val.json``/``test.json``: one entry per real image with its captions;
* ``val_gt.json``/``test_gt.json``: the same references in COCO caption
  format for the metric.
"""
import os
import os.path as osp
import random
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from pcm_plugin.utils.fileio import atomic_write_json

SPLITS = ('train', 'val', 'test')
# The official synthetic image ids start here (docs/method.md §2.1).
TRAIN_ID_START = 6000000


@dataclass
class ImageCaptions:
    """One image and its captions, as read from any caption source.

    Args:
        image_id (str): Integer-like id used for evaluation (``int()`` must
            work; the COCO metric needs integer ids).
        file_name (str): Image path relative to the image root.
        captions (list[str]): The captions, stripped.
        caption_ids (list[str]): Source id of each caption (COCO
            annotation id, Karpathy ``sentid``, CSV line number).
    """
    image_id: str
    file_name: str
    captions: List[str] = field(default_factory=list)
    caption_ids: List[str] = field(default_factory=list)


def stem_image_id(file_name: str, policy: str) -> Optional[int]:
    """Integer id read from an image file name, or None if it has none.

    Args:
        file_name (str): e.g. ``'val2014/COCO_val2014_000000391895.jpg'``.
        policy (str): ``'stem'``: the whole stem is a number
            (Flickr30k ``1000092795.jpg``); ``'last'``: the digits after
            the last ``_`` (COCO, and the official extractor's rule);
            ``'first'``: the digits before the first ``_`` (the Flickr
            photo id of Flickr8k ``1000268201_693b08cb0e.jpg``).
    """
    stem = osp.splitext(osp.basename(file_name))[0]
    part = {'stem': stem, 'last': stem.rsplit('_', 1)[-1],
            'first': stem.split('_', 1)[0]}[policy]
    return int(part) if re.fullmatch(r'\d+', part) else None


def derive_image_ids(file_names: Sequence[str],
                     policy: str = 'auto') -> Tuple[Dict[str, str], str]:
    """Give every image a stable, unique integer id from its file name.

    Args:
        file_names (Sequence[str]): Distinct image file names.
        policy (str): ``'stem'``, ``'last'``, ``'first'`` (see
            :func:`stem_image_id`), ``'index'`` (1 + position in sorted
            file-name order) or ``'auto'``: the first of stem/last/first
            that yields unique ids for every file, else index. Defaults to
            ``'auto'``.

    Returns:
        tuple[dict, str]: file name -> id (str), and the policy used.
    """
    names = sorted(set(file_names))
    candidates = ('stem', 'last', 'first', 'index') if policy == 'auto' \
        else (policy,)
    for name in candidates:
        if name == 'index':
            return {f: str(i + 1) for i, f in enumerate(names)}, 'index'
        ids = [stem_image_id(f, name) for f in names]
        if None not in ids and len(set(ids)) == len(ids):
            return {f: str(i) for f, i in zip(names, ids)}, name
    bad = [f for f in names if stem_image_id(f, policy) is None][:3]
    raise ValueError(
        f'image id policy {policy!r} gives no unique integer id for every '
        f'image (e.g. {bad or "duplicates"}); use --image-id auto or index')


def parse_split_spec(spec: str) -> Tuple[float, ...]:
    """Parse ``'0.9,0.05,0.05'`` (fractions) or ``'rest,1000,1000'``.

    Returns:
        tuple: three numbers for train/val/test; fractions sum to 1, counts
        are integers and ``-1`` stands for ``rest`` (at most one).
    """
    parts = [p.strip() for p in spec.split(',')]
    if len(parts) != 3:
        raise ValueError(f'--split {spec!r}: give three values for '
                         'train,val,test, e.g. 0.9,0.05,0.05 or '
                         'rest,1000,1000')
    if any(p == 'rest' for p in parts) or all(p.isdigit() for p in parts):
        if parts.count('rest') > 1 or not all(
                p == 'rest' or p.isdigit() for p in parts):
            raise ValueError(f'--split {spec!r}: counts must be integers '
                             'with at most one `rest`')
        return tuple(-1 if p == 'rest' else int(p) for p in parts)
    try:
        fractions = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f'--split {spec!r}: not numbers') from None
    if min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f'--split {spec!r}: fractions must be >= 0 and sum '
                         'to 1')
    return fractions


def _split_sizes(n: int, spec: Sequence[float]) -> List[int]:
    if all(isinstance(s, int) for s in spec):  # counts, -1 = rest
        counts = list(spec)
        fixed = sum(c for c in counts if c >= 0)
        if -1 in counts:
            counts[counts.index(-1)] = n - fixed
        if fixed > n or sum(counts) != n:
            raise ValueError(f'split counts {list(spec)} do not add up to '
                             f'the {n} images (use `rest` for one split)')
        return counts
    # Fractions: val/test rounded, train takes the rest, and a non-zero
    # fraction never rounds down to an empty split.
    sizes = [0] + [max(1, round(n * f)) if f > 0 else 0 for f in spec[1:]]
    sizes[0] = n - sum(sizes[1:])
    if sizes[0] < 0 or (spec[0] > 0 and sizes[0] == 0):
        raise ValueError(f'{n} images are too few for split {list(spec)}')
    return sizes


def split_by_image(images: Sequence[ImageCaptions], spec: Sequence[float],
                   seed: int = 0) -> Dict[str, List[ImageCaptions]]:
    """Seeded random split of images (never captions) into train/val/test.

    The result depends only on the set of file names, the spec and the
    seed, not on the input order; each split keeps file-name order.

    Args:
        images (Sequence[ImageCaptions]): Distinct images.
        spec (Sequence[float]): From :func:`parse_split_spec`.
        seed (int): Shuffle seed. Defaults to 0.

    Returns:
        dict: split name -> images.
    """
    ordered = sorted(images, key=lambda im: im.file_name)
    sizes = _split_sizes(len(ordered), spec)
    order = list(range(len(ordered)))
    random.Random(seed).shuffle(order)
    splits, start = {}, 0
    for name, size in zip(SPLITS, sizes):
        chosen = sorted(order[start:start + size])
        splits[name] = [ordered[i] for i in chosen]
        start += size
    return splits


def train_entries(images: Sequence[ImageCaptions], *,
                  id_start: int = TRAIN_ID_START) -> List[Dict]:
    """One entry per caption with a synthetic image id.

    Returns:
        list[dict]: ``image_id`` (``str(id_start + k)`` for the k-th
        caption), ``caption``, and for traceability ``source_image_id``,
        ``source_caption_id`` and ``source_file_name`` (the real image the
        caption describes; training never looks at it).
    """
    entries = []
    for image in images:
        for caption, caption_id in zip(image.captions, image.caption_ids):
            entries.append(dict(
                image_id=str(id_start + len(entries)), caption=caption,
                source_image_id=image.image_id,
                source_caption_id=str(caption_id),
                source_file_name=image.file_name))
    return entries


def eval_entries(images: Sequence[ImageCaptions]) -> List[Dict]:
    """One entry per real image: ``image_id``, ``file_name``, captions."""
    return [dict(image_id=im.image_id, file_name=im.file_name,
                 captions=list(im.captions)) for im in images]


def coco_ground_truth(images: Sequence[ImageCaptions],
                      description: str = '') -> Dict:
    """COCO caption-format references (annotation ids 1, 2, ...)."""
    annotations = []
    for image in images:
        for caption in image.captions:
            annotations.append(dict(image_id=int(image.image_id),
                                    id=len(annotations) + 1,
                                    caption=caption))
    return dict(
        info=dict(description=description), licenses=[], type='captions',
        images=[dict(id=int(im.image_id), file_name=im.file_name)
                for im in images],
        annotations=annotations)


def check_disjoint(splits: Dict[str, Sequence[ImageCaptions]]) -> None:
    """Raise if an image id or file name is in two splits."""
    owner: Dict[str, str] = {}
    for split, images in splits.items():
        for image in images:
            for key in (f'id {image.image_id}', f'file {image.file_name}'):
                if owner.setdefault(key, split) != split:
                    raise ValueError(f'image {key} is in both the '
                                     f'{owner[key]} and {split} splits')


def write_annotation_files(out_dir: str,
                           splits: Dict[str, Sequence[ImageCaptions]], *,
                           dataset: str, source: str,
                           train_id_start: int = TRAIN_ID_START
                           ) -> Dict[str, str]:
    """Write ``<out_dir>/annotations/`` train/val/test and ``*_gt`` JSONs.

    Args:
        out_dir (str): Dataset root; files go to its ``annotations/``.
        splits (dict): ``'train'``/``'val'``/``'test'`` -> images.
        dataset (str): Name stored in ``metainfo`` (e.g. ``'coco'``).
        source (str): Where the captions came from (stored in metainfo).
        train_id_start (int): First synthetic image id. Defaults to
            6000000.

    Returns:
        dict: file kind (``'train'``, ``'val_gt'``, ...) -> path written.
    """
    check_disjoint(splits)
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    written = {}
    for split in SPLITS:
        images = splits.get(split, [])
        if split == 'train':
            data_list = train_entries(images, id_start=train_id_start)
        else:
            data_list = eval_entries(images)
        metainfo = dict(dataset=dataset, split=split, source=source,
                        num_images=len(images),
                        num_captions=sum(len(i.captions) for i in images))
        path = osp.join(ann_dir, f'{split}.json')
        atomic_write_json(path, dict(metainfo=metainfo, data_list=data_list))
        written[split] = path
        if split != 'train':
            gt_path = osp.join(ann_dir, f'{split}_gt.json')
            atomic_write_json(gt_path, coco_ground_truth(
                images, f'{dataset} {split} references from {source}'))
            written[f'{split}_gt'] = gt_path
    return written


def split_summary(splits: Dict[str, Sequence[ImageCaptions]],
                  train_id_start: int = TRAIN_ID_START) -> str:
    """A small table of images and captions per split."""
    lines = [f'{"split":<6} {"images":>8} {"captions":>9}']
    for split in SPLITS:
        images = splits.get(split, [])
        lines.append(f'{split:<6} {len(images):>8} '
                     f'{sum(len(i.captions) for i in images):>9}')
    num_train = sum(len(i.captions) for i in splits.get('train', []))
    if num_train:
        lines.append(f'train synthetic image ids: {train_id_start} .. '
                     f'{train_id_start + num_train - 1}')
    return '\n'.join(lines)
