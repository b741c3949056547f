# Copyright (c) pcm_plugin authors. MIT licence.
"""The official PCM-Net release in and out (``tools/data/import_official.py``).

In: the annotation pickles and ``vocabulary.txt`` become this plugin's
annotation files and ``tokenizer.json`` (official word id ``j`` is ``j + 2``,
as the checkpoint converter lays out the vocabulary rows, so imported data
and a converted official checkpoint agree); SynC's refined pickle becomes a
refined annotation file whose records carry their new image's own feature
folder. Out: a training set as an official pickle + ``vocabulary.txt``, and
predictions as the results JSON the official ``test_net.py`` writes.

Every input is read and checked before the first output byte is written.
"""
import json
import os.path as osp
import pickle
from typing import Dict, List, Optional, Sequence

import torch

from pcm_plugin.datasets.feature_store import FeatureStore
from pcm_plugin.models.tokenizer import (
    EOS_ID,
    UNK_ID,
    encode_captions,
    load_caption_tokenizer,
    save_tokenizer,
    tokenizer_from_official_words,
)
from pcm_plugin.utils.fileio import atomic_write_bytes, atomic_write_json

from .caption_readers import load_json
from .official_records import (
    CLIP_SCORE_SCALE,
    SYNC_SCORES,
    check_tokenizer_agrees,
    official_entries,
    read_official_records,
    read_official_vocabulary,
)

# Images per synthetic feature folder when this plugin's data is exported
# (the official MSCOCO-SD lists hold 67,800 ids each).
IMAGES_PER_FOLDER = 67800
MAX_WORDS = 20  # the official MAX_SEQ_LEN; rows are MAX_WORDS + 1 long


def _words_and_tokenizer(vocabulary: str):
    words = read_official_vocabulary(vocabulary)
    return words, tokenizer_from_official_words(words)


def _write(out_dir: str, name: str, entries: List[Dict], metainfo: Dict,
           tokenizer=None) -> Dict[str, str]:
    written = {'annotation': osp.join(out_dir, 'annotations', name)}
    atomic_write_json(written['annotation'],
                      dict(metainfo=metainfo, data_list=entries))
    if tokenizer is not None:
        written['tokenizer'] = osp.join(out_dir, 'tokenizer.json')
        save_tokenizer(tokenizer, written['tokenizer'])
    return written


def import_official_annotations(pickle_file: str, vocabulary: str,
                                out_dir: str, *, split: str,
                                dataset: str = 'coco') -> Dict:
    """An official annotation pickle as ``<out_dir>/annotations/<split>.json``
    (and the vocabulary as ``<out_dir>/tokenizer.json``).

    Args:
        pickle_file (str): ``mscoco_caption_anno_<split>.pkl`` or the like.
        vocabulary (str): The release's ``vocabulary.txt``.
        out_dir (str): Dataset root to write into.
        split (str): ``'train'`` (one entry per caption, ``clip_cos`` =
            ``clipscore / 2.5``), ``'val'`` or ``'test'`` (one per image).
        dataset (str): Name stored in ``metainfo``.

    Returns:
        dict: paths written and counts.
    """
    words, tokenizer = _words_and_tokenizer(vocabulary)
    records = read_official_records(pickle_file)
    train = split == 'train'
    entries = official_entries(pickle_file, records, words,
                               scale=CLIP_SCORE_SCALE if train else None)
    if train:
        check_tokenizer_agrees(tokenizer, entries, records, words,
                               pickle_file)
    metainfo = dict(dataset=dataset, split=split,
                    source=osp.basename(pickle_file),
                    num_records=len(records), num_entries=len(entries))
    if train:
        metainfo['clip_cos'] = (f'clipscore / {CLIP_SCORE_SCALE}: the CLIP '
                                'image-caption cosine (the file stores '
                                f'{CLIP_SCORE_SCALE} x cosine)')
    written = _write(out_dir, f'{split}.json', entries, metainfo, tokenizer)
    return dict(written, records=len(records), entries=len(entries))


def import_sync_annotations(refined_file: str, original_file: str,
                            vocabulary: str, out_dir: str, *,
                            score: str = 'siglip2-cosine',
                            dataset: str = 'coco') -> Dict:
    """SynC's refined pickle as ``<out_dir>/annotations/train_sync.json``.

    SynC replaces ``image_id`` but keeps the record's old ``split_id``, so
    the official loader, which finds an image's folder from its
    ``split_id``, looks in the wrong folder when the new image lives in
    another one. Here every record gets the ``split_id`` its new image has
    in the original list.

    Args:
        refined_file (str): SynC's ``PCM-Net_pcmnet_..._length<n>.pickle``.
        original_file (str): The official train pickle it was refined from
            (where every synthetic image's folder is recorded).
        vocabulary (str): The release's ``vocabulary.txt``.
        out_dir (str): Dataset root to write into.
        score (str): ``'siglip2-cosine'`` (``clip_cos`` = clipscore / 5,
            the SigLIP2 cosine) or ``'as-official'`` (clipscore / 2.5: the
            weight the official loss gives the file as it is).
        dataset (str): Name stored in ``metainfo``.

    Returns:
        dict: paths written and counts (``moved``: records whose image sits
        in another folder than their ``split_id`` says).
    """
    if score not in SYNC_SCORES:
        raise ValueError(f'score {score!r}: one of {sorted(SYNC_SCORES)}')
    words, tokenizer = _words_and_tokenizer(vocabulary)
    refined = read_official_records(refined_file)
    folder = {str(r['image_id']): r.get('split_id')
              for r in read_official_records(original_file)}
    missing = sorted({str(r['image_id']) for r in refined} - set(folder))
    if missing:
        raise ValueError(f'{refined_file}: {len(missing)} image ids are not '
                         f'in {original_file} (e.g. {missing[:3]}): their '
                         'feature folders are unknown; give the train pickle '
                         'SynC refined')
    entries = official_entries(refined_file, refined, words,
                               scale=SYNC_SCORES[score])
    check_tokenizer_agrees(tokenizer, entries, refined, words, refined_file)
    moved = 0
    for entry in entries:
        own = folder[entry['image_id']]
        if entry.get('split_id') != own:
            entry['record_split_id'] = entry.get('split_id')
            entry['split_id'] = own
            moved += 1
    metainfo = dict(dataset=dataset, split='train', refined_by='SynC',
                    source=osp.basename(refined_file),
                    original=osp.basename(original_file),
                    num_records=len(refined), num_entries=len(entries),
                    moved_folder=moved, clip_cos=(
                        f'clipscore / {SYNC_SCORES[score]} ({score}); SynC '
                        'stores 5 x the SigLIP2 cosine'))
    written = _write(out_dir, 'train_sync.json', entries, metainfo)
    return dict(written, records=len(refined), entries=len(entries),
                moved=moved)


def official_split_ids(entries: Sequence[Dict], *,
                       images_per_folder: int = IMAGES_PER_FOLDER
                       ) -> List[Dict]:
    """``image_id``/``split_id`` of each distinct image of training entries:
    the entry's own ``split_id``, else its image's position // the folder
    size."""
    items, seen = [], set()
    for entry in entries:
        image_id = str(entry['image_id'])
        if image_id not in seen:
            seen.add(image_id)
            split = entry.get('split_id', len(items) // images_per_folder)
            items.append(dict(image_id=image_id, split_id=split))
    return items


def export_items(ann_file: str, *,
                 images_per_folder: int = IMAGES_PER_FOLDER) -> List[Dict]:
    """The images of an annotation file with the folder each is exported
    to: training entries (with ``caption``) as synthetic images
    (:func:`official_split_ids`), evaluation entries as real ones."""
    entries = load_json(ann_file)['data_list']
    if entries and 'caption' in entries[0]:
        return official_split_ids(entries,
                                  images_per_folder=images_per_folder)
    return [dict(image_id=str(e['image_id']), split_id=None)
            for e in entries]


def _official_rows(tokenizer, captions: Sequence[str], ann_file: str):
    """``(tokens_ids, target_ids)`` (n, MAX_WORDS + 1) int64 over the
    official word ids, from this plugin's tokenizer ids (``j + 2 -> j``)."""
    inputs, targets, mask = encode_captions(tokenizer, captions,
                                            max_len=MAX_WORDS)
    unknown = ((inputs == UNK_ID) & mask).any(dim=1).nonzero().flatten()
    if len(unknown):
        raise ValueError(f'{ann_file}: {len(unknown)} captions have a word '
                         f'outside the tokenizer (e.g. '
                         f'{captions[int(unknown[0])]!r}); the official '
                         'vocabulary has no [UNK]: rebuild the tokenizer '
                         'with every word, or drop those captions')
    shift = torch.where(inputs > EOS_ID, inputs - 2, torch.zeros_like(inputs))
    tokens = torch.where(mask, shift, torch.zeros_like(inputs))
    target = torch.where(targets > EOS_ID, targets - 2, targets)
    target[targets < 0] = -1
    pad = MAX_WORDS + 1 - tokens.shape[1]
    tokens = torch.nn.functional.pad(tokens, (0, pad), value=0)
    target = torch.nn.functional.pad(target, (0, pad), value=-1)
    return tokens.numpy(), target.numpy()


def export_official_annotations(ann_file: str, tokenizer_file: str,
                                out_pickle: str, out_vocabulary: str, *,
                                feature_dir: Optional[str] = None,
                                images_per_folder: int = IMAGES_PER_FOLDER
                                ) -> Dict:
    """A training annotation file as an official pickle + vocabulary.

    Args:
        ann_file (str): This plugin's train annotation file.
        tokenizer_file (str): Its ``tokenizer.json`` (words become
            ``vocabulary.txt`` lines, id 3 first).
        out_pickle (str): e.g. ``mscoco_caption_anno_train.pkl``.
        out_vocabulary (str): e.g. ``vocabulary.txt``.
        feature_dir (str, optional): The feature store holding the CLIP
            cosines of entries without ``clip_cos``.
        images_per_folder (int): Synthetic images per ``_sp<k>`` folder.

    Returns:
        dict: ``records`` and the paths written.
    """
    entries = load_json(ann_file)['data_list']
    tokenizer = load_caption_tokenizer(tokenizer_file)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    words = [word for word, _ in vocab[3:]]
    tokens, targets = _official_rows(tokenizer, [e['caption'] for e in
                                                 entries], ann_file)
    store = FeatureStore(feature_dir) if feature_dir else None
    split = {i['image_id']: i['split_id'] for i in official_split_ids(
        entries, images_per_folder=images_per_folder)}
    records = []
    for k, entry in enumerate(entries):
        cos = entry.get('clip_cos')
        if cos is None:
            if store is None:
                raise ValueError(f'{ann_file}: entry {k} has no clip_cos; '
                                 'give the feature store (--feature-dir)')
            cos = store.get(entry['image_id'])['clip_cos']
        image_id = str(entry['image_id'])
        # float64: 2.5 x a float32 cosine is exact, and so is / 2.5 back.
        records.append(dict(
            image_id=image_id, split_id=split[image_id],
            tokens_ids=tokens[k:k + 1], target_ids=targets[k:k + 1],
            clipscore=CLIP_SCORE_SCALE * float(cos)))
    atomic_write_bytes(out_pickle, lambda f: pickle.dump(records, f,
                                                         protocol=4))
    atomic_write_bytes(out_vocabulary, lambda f: f.write(
        ''.join(f'{w}\n' for w in words).encode('utf-8')))
    return dict(records=len(records), pickle=out_pickle,
                vocabulary=out_vocabulary)


def export_official_results(predictions: str, out_file: str, *,
                            ann_file: Optional[str] = None) -> int:
    """This plugin's captions (``tools/test.py --out``) as the official
    ``results/<epoch>.json``: ``[{"image_id": int, "caption": str}]`` with
    the ``' .'`` the official decoder writes at the end-of-sentence, in the
    order of ``ann_file``'s images when given.

    Returns:
        int: The number of captions written.
    """
    rows = load_json(predictions)
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and {'image_id', 'caption'} <= set(r)
            for r in rows):
        raise ValueError(f'{predictions}: expected a list of {{"image_id", '
                         '"caption"}} (tools/test.py --out FILE.json)')
    if ann_file is not None:
        order = {int(e['image_id']): k for k, e in
                 enumerate(load_json(ann_file)['data_list'])}
        missing = [r['image_id'] for r in rows if int(r['image_id'])
                   not in order]
        if missing:
            raise ValueError(f'{predictions}: image ids {missing[:3]} are '
                             f'not in {ann_file}')
        rows = sorted(rows, key=lambda r: order[int(r['image_id'])])
    results = [{'image_id': int(r['image_id']),
                'caption': r['caption'] if r['caption'].endswith('.')
                else f'{r["caption"]} .'} for r in rows]
    atomic_write_bytes(out_file, lambda f: f.write(
        json.dumps(results).encode('utf-8')))
    return len(results)

