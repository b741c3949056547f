# Copyright (c) pcm_plugin authors. MIT licence.
"""Readers for caption corpora: Karpathy JSON, caption CSV, COCO captions.

Each reader returns :class:`~.annotations.ImageCaptions` records and sends
every bad item (malformed row, missing image, empty caption, an image
listed twice) through a :class:`~.bad_input.BadInputPolicy`, which raises
an error naming the file and the line or key, or counts a skip. Captions are
stripped of surrounding whitespace and otherwise kept as written (non-ASCII
included); lower-casing and punctuation are the tokenizer's business.
"""
import csv
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from pcm_plugin.utils.progress import progress_bar

from .annotations import ImageCaptions, derive_image_ids, stem_image_id
from .bad_input import BadInputError, BadInputPolicy

KARPATHY_SPLITS = ('train', 'restval', 'val', 'test')


def load_json(path: str):
    """``json.load`` with errors that name the file, line and column."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'caption file {path} not found')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise BadInputError(f'{path}:{exc.lineno}:{exc.colno}: invalid JSON '
                            f'({exc.msg})') from None
    except UnicodeDecodeError as exc:
        raise BadInputError(f'{path}: not UTF-8 text (byte {exc.start})'
                            ) from None


def _clean(caption) -> Optional[str]:
    return caption.strip() if isinstance(caption, str) else None


def _karpathy_id_rule(images: Sequence[dict], rule: str) -> str:
    if rule != 'auto':
        return rule
    # Decided on the well-formed entries (malformed ones are reported).
    images = [im for im in images if isinstance(im, dict) and all(
        k in im for k in ('filename', 'split', 'sentences'))]
    if all('cocoid' in im for im in images):
        return 'cocoid'
    if all(stem_image_id(str(im.get('filename', '')), 'stem') is not None
           for im in images):
        return 'stem'
    return 'imgid'


def _karpathy_image_id(image: dict, rule: str):
    if rule == 'stem':
        return stem_image_id(str(image.get('filename', '')), 'stem')
    value = image.get(rule)
    return value if isinstance(value, int) else None


def read_karpathy(path: str, *, policy: BadInputPolicy,
                  restval: str = 'train', image_id: str = 'auto',
                  progress: bool = False
                  ) -> Tuple[Dict[str, List[ImageCaptions]], str]:
    """Read ``dataset_coco.json``/``dataset_flickr30k.json``.

    Args:
        path (str): The Karpathy-split JSON.
        policy (BadInputPolicy): What to do with bad entries.
        restval (str): Where ``restval`` images go: ``'train'`` (the
            Karpathy convention), ``'val'``, ``'test'`` or ``'drop'``.
            Defaults to ``'train'``.
        image_id (str): Evaluation id: ``'cocoid'``, ``'imgid'``,
            ``'stem'`` (numeric file stem, Flickr30k) or ``'auto'``
            (cocoid if every image has one, else stem if numeric, else
            imgid). Defaults to ``'auto'``.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        tuple: split name -> images, and the id rule used.
    """
    data = load_json(path)
    images = data.get('images') if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise BadInputError(f'{path}: no `images` list; is this a Karpathy '
                            'split file (dataset_coco.json)?')
    rule = _karpathy_id_rule(images, image_id)
    splits: Dict[str, List[ImageCaptions]] = {'train': [], 'val': [],
                                              'test': []}
    seen: Dict[str, str] = {}
    for idx, im in enumerate(progress_bar(images, desc='images',
                                          disable=not progress)):
        where = f'{path}: images[{idx}]'
        if not isinstance(im, dict) or not all(
                k in im for k in ('filename', 'split', 'sentences')):
            policy.bad('malformed image entry', f'{where} lacks filename, '
                       'split or sentences')
            continue
        split = im['split']
        if split not in KARPATHY_SPLITS:
            policy.bad('unknown split', f'{where} ({im["filename"]}) has '
                       f'split {split!r}, expected one of {KARPATHY_SPLITS}')
            continue
        if split == 'restval':
            if restval == 'drop':
                continue
            split = restval
        number = _karpathy_image_id(im, rule)
        if number is None:
            policy.bad('malformed image entry', f'{where} '
                       f'({im["filename"]}) has no integer {rule}')
            continue
        file_name = osp.join(im.get('filepath') or '', im['filename'])
        record = ImageCaptions(image_id=str(number), file_name=file_name)
        for k, sentence in enumerate(im['sentences'] or []):
            raw = _clean(sentence.get('raw')) if isinstance(
                sentence, dict) else None
            if not raw:
                policy.bad('empty caption', f'{where} ({file_name}) '
                           f'sentences[{k}] has an empty or missing `raw`')
                continue
            record.captions.append(raw)
            record.caption_ids.append(str(sentence.get(
                'sentid', f'{number}:{k}')))
        if not _claim(seen, record, where, policy):
            continue
        if not record.captions:
            policy.bad('image without captions',
                       f'{where} ({file_name}) has no usable caption')
            continue
        splits[split].append(record)
    return splits, rule


def _claim(seen: Dict[str, str], record: ImageCaptions, where: str,
           policy: BadInputPolicy) -> bool:
    """Register an image; report it if its id or file is already taken."""
    for key in (f'id {record.image_id}', f'file {record.file_name}'):
        if key in seen:
            policy.bad('image listed twice', f'{where}: image {key} '
                       f'({record.file_name}) was already listed at '
                       f'{seen[key]}')
            return False
    seen[f'id {record.image_id}'] = seen[f'file {record.file_name}'] = where
    return True


def _check_image(image_dir: Optional[str], file_name: str, where: str,
                 policy: BadInputPolicy) -> bool:
    if image_dir is None or osp.isfile(osp.join(image_dir, file_name)):
        return True
    policy.bad('missing image', f'{where}: image {file_name} not found in '
               f'{image_dir}')
    return False


def read_caption_csv(path: str, *, policy: BadInputPolicy,
                     image_dir: Optional[str] = None,
                     duplicates: str = 'error', image_id: str = 'auto',
                     progress: bool = False
                     ) -> Tuple[List[ImageCaptions], str]:
    """Read the widespread ``image,caption`` CSV (Flickr8k ``captions.txt``).

    Args:
        path (str): CSV with the header ``image,caption``; captions holding
            commas must be quoted, and no caption holds a line break (a
            quoted caption over two lines is a bad row: it is how an
            unclosed quote looks).
        policy (BadInputPolicy): What to do with bad rows.
        image_dir (str, optional): If given, every image must exist there.
        duplicates (str): A row repeating an earlier (image, caption):
            ``'error'`` (a bad row), ``'skip'`` (drop and count) or
            ``'keep'`` (a separate caption). Defaults to ``'error'``.
        image_id (str): Policy of :func:`~.annotations.derive_image_ids`.
            Defaults to ``'auto'`` (Flickr8k: the Flickr photo id).
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        tuple: images in order of first appearance (caption ids are the CSV
        line numbers), and the image-id rule used.

    Raises:
        BadInputError: a missing header, undecodable text, or (without
            ``policy.skip_bad``) a bad row, naming the file and the line.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'caption file {path} not found')
    records: Dict[str, ImageCaptions] = {}
    first_line: Dict[Tuple[str, str], int] = {}
    missing = set()
    with open(path, encoding='utf-8', newline='') as f:
        line = 0
        try:
            for line, text in enumerate(progress_bar(
                    f, desc='rows', disable=not progress), 1):
                row = _csv_line(text, path, line, policy)
                if line == 1:
                    _check_header(row, path)
                elif row:  # else a blank line (or a bad one, reported)
                    _read_row(row, path, line, records, first_line, missing,
                              policy=policy, image_dir=image_dir,
                              duplicates=duplicates)
        except UnicodeDecodeError as exc:
            raise BadInputError(f'{path}: not UTF-8 text (byte {exc.start})'
                                ) from None
        if line == 0:
            _check_header(None, path)
    ids, rule = derive_image_ids(list(records), image_id)
    for name, record in records.items():
        record.image_id = ids[name]
    return list(records.values()), rule


def _check_header(row: Optional[List[str]], path: str) -> None:
    if [h.strip().lower() for h in row or []] != ['image', 'caption']:
        raise BadInputError(f'{path}:1: expected the header `image,caption`, '
                            f'got {row!r}')


def _csv_line(text: str, path: str, line: int,
              policy: BadInputPolicy) -> List[str]:
    """The fields of one physical line of a caption CSV.

    Each line is parsed alone: a caption holds no line break, so a quote
    left open would otherwise swallow the rest of the file into one
    caption. A line whose quote is not closed on it is a bad row (skipped
    alone with ``--skip-bad``, the next line read afresh).

    Returns:
        list[str]: The fields; ``[]`` for a blank or skipped line.
    """
    # A last line without its line break: add one, so that a quote left
    # open to the end of the file shows as a break inside a field.
    if not text.endswith(('\n', '\r')):
        text += '\n'
    try:
        row = next(csv.reader([text]), [])
    except csv.Error as exc:  # e.g. a NUL byte
        raise BadInputError(f'{path}:{line}: unreadable CSV ({exc})'
                            ) from None
    if any('\n' in field or '\r' in field for field in row):
        policy.bad('unclosed quote', f'{path}:{line}: the quote opened on '
                   'this line is not closed on it (a caption cannot hold a '
                   f'line break): {text.rstrip()!r:.100}',
                   hint='close the quote, or pass --skip-bad to skip and '
                   'count such lines')
        return []
    return row


def _read_row(row: List[str], path: str, line: int,
              records: Dict[str, ImageCaptions], first_line: Dict,
              missing: set, *, policy: BadInputPolicy,
              image_dir: Optional[str], duplicates: str) -> None:
    where = f'{path}:{line}'
    if len(row) != 2 or not row[0].strip():
        policy.bad('malformed row', f'{where}: expected 2 fields '
                   f'(image,caption), got {len(row)}: {row!r:.100}',
                   hint='quote captions that contain commas, or pass '
                   '--skip-bad')
        return
    name, caption = row[0].strip(), row[1].strip()
    if name in missing:
        return  # already reported once for this image
    if not caption:
        policy.bad('empty caption', f'{where}: empty caption for {name}')
        return
    key = (name, caption)
    if key in first_line and duplicates != 'keep':
        if duplicates == 'skip':
            policy.counts['duplicate row'] += 1
        else:
            policy.bad('duplicate row', f'{where}: repeats line '
                       f'{first_line[key]} ({name}, {caption!r})',
                       hint='pass --duplicates keep (keep both) or '
                       '--duplicates skip / --skip-bad (drop and count)')
        return
    if name not in records:
        if not _check_image(image_dir, name, where, policy):
            missing.add(name)
            return
        records[name] = ImageCaptions(image_id='', file_name=name)
    first_line.setdefault(key, line)
    records[name].captions.append(caption)
    records[name].caption_ids.append(str(line))


def read_coco_captions(path: str, *, policy: BadInputPolicy,
                       image_dir: Optional[str] = None,
                       image_prefix: str = '',
                       progress: bool = False) -> List[ImageCaptions]:
    """Read the official COCO caption format (``captions_val2014.json``).

    Args:
        path (str): JSON with ``images`` (``id``, ``file_name``) and
            ``annotations`` (``id``, ``image_id``, ``caption``).
        policy (BadInputPolicy): What to do with bad entries.
        image_dir (str, optional): If given, every image must exist there
            (as ``image_prefix + file_name``).
        image_prefix (str): Prepended to ``file_name``, e.g.
            ``'val2014/'``. Defaults to ``''``.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        list[ImageCaptions]: in ``images`` order; each image's captions in
        annotation-id order.
    """
    data = load_json(path)
    for key in ('images', 'annotations'):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise BadInputError(f'{path}: no `{key}` list; is this a COCO '
                                'caption file (captions_val2014.json)?')
    records: Dict[int, ImageCaptions] = {}
    seen: Dict[str, str] = {}
    listed = set()  # every image id in `images`, skipped ones included
    for idx, im in enumerate(data['images']):
        where = f'{path}: images[{idx}]'
        if not isinstance(im, dict) or not isinstance(im.get('id'), int) \
                or not isinstance(im.get('file_name'), str):
            policy.bad('malformed image entry', f'{where} needs an integer '
                       '`id` and a `file_name`')
            continue
        listed.add(im['id'])
        record = ImageCaptions(image_id=str(im['id']),
                               file_name=image_prefix + im['file_name'])
        if _claim(seen, record, where, policy) and _check_image(
                image_dir, record.file_name, where, policy):
            records[im['id']] = record
    pairs = []
    ann_where: Dict[int, str] = {}
    for idx, ann in enumerate(progress_bar(data['annotations'],
                                           desc='captions',
                                           disable=not progress)):
        where = f'{path}: annotations[{idx}]'
        if not isinstance(ann, dict) or not isinstance(ann.get('id'), int) \
                or 'image_id' not in ann:
            policy.bad('malformed annotation', f'{where} needs an integer '
                       '`id` and an `image_id`')
            continue
        if ann['id'] in ann_where:
            policy.bad('duplicate annotation id', f'{where} repeats '
                       f'annotation id {ann["id"]} of {ann_where[ann["id"]]}')
            continue
        ann_where[ann['id']] = where
        caption = _clean(ann.get('caption'))
        if ann['image_id'] not in records:
            if ann['image_id'] not in listed:
                policy.bad('caption of unknown image', f'{where}: image_id '
                           f'{ann["image_id"]} is not in `images`')
            continue  # else the image itself was skipped
        if not caption:
            policy.bad('empty caption', f'{where} (image '
                       f'{ann["image_id"]}): empty or missing `caption`')
            continue
        pairs.append((ann['id'], ann['image_id'], caption))
    for ann_id, image_id, caption in sorted(pairs):
        records[image_id].captions.append(caption)
        records[image_id].caption_ids.append(str(ann_id))
    for record in records.values():
        if not record.captions:
            policy.bad('image without captions', f'{path}: image '
                       f'{record.image_id} ({record.file_name}) has no '
                       'caption')
    return [r for r in records.values() if r.captions]


def read_annotation_captions(path: str) -> List[str]:
    """All captions of a project annotation file (train or val/test)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get('data_list'),
                                                    list):
        raise BadInputError(f'{path}: no `data_list`; expected an annotation '
                            'file written by tools/data/convert_*.py')
    captions = []
    for idx, entry in enumerate(data['data_list']):
        if isinstance(entry.get('caption'), str):
            captions.append(entry['caption'])
        elif isinstance(entry.get('captions'), list):
            captions.extend(c for c in entry['captions'] if isinstance(c, str))
        else:
            raise BadInputError(f'{path}: data_list[{idx}] has neither '
                                '`caption` nor `captions`')
    return captions


def read_caption_corpus(path: str, *,
                        policy: Optional[BadInputPolicy] = None,
                        karpathy_splits: Sequence[str] = ('train',
                                                          'restval')
                        ) -> List[str]:
    """Captions of any supported corpus, the format told by its content.

    Args:
        path (str): A project annotation file, a COCO caption JSON, a
            Karpathy JSON (only ``karpathy_splits`` are read) or an
            ``image,caption`` CSV (``.csv``/``.txt``).
        policy (BadInputPolicy, optional): Defaults to raising on bad items.
        karpathy_splits (Sequence[str]): Defaults to train + restval.

    Returns:
        list[str]: The captions.
    """
    policy = policy or BadInputPolicy()
    if path.endswith(('.csv', '.txt')):
        records, _ = read_caption_csv(path, policy=policy,
                                      duplicates='keep')
        return [c for r in records for c in r.captions]
    data = load_json(path)
    if isinstance(data, dict) and 'data_list' in data:
        return read_annotation_captions(path)
    if isinstance(data, dict) and 'annotations' in data:
        records = read_coco_captions(path, policy=policy)
        return [c for r in records for c in r.captions]
    if isinstance(data, dict) and 'images' in data:
        return [_clean(s.get('raw')) or '' for im in data['images']
                if im.get('split') in karpathy_splits
                for s in im.get('sentences', [])]
    raise BadInputError(f'{path}: unknown caption format (expected a '
                        'project annotation file, COCO captions, a Karpathy '
                        'split JSON or an image,caption CSV)')
