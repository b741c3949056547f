"""A tiny official PCM-Net release, and the official loader, written here.

The builders follow the official preprocessing conventions (X-modaler
pickles, OpenAI-CLIP-Feature ``.npz``; docs/method.md §2.2-2.3);
:func:`official_sample` restates what
``xmodaler/datasets/images/mscoco.py`` and ``weighted_label_smoothing.py``
compute for one training record, independently of pcm_plugin, so the tests
compare the plugin's import against it.
"""
import os
import os.path as osp
import pickle

import numpy as np
import torch

WORDS = ['a', 'dog', 'on', 'the', 'grass', 'red', 'cat', 'UNK']  # ids 1..
MAX_SEQ_LEN = 20
N, DV, DG = 4, 6, 5  # patches, patch width, global width
ALPHA = 2.5


def token_rows(caption, words=WORDS):
    """Official ``tokens_ids`` / ``target_ids`` rows (1, MAX_SEQ_LEN + 1)."""
    ids = [words.index(w) + 1 for w in caption.split()]
    tokens = np.zeros((1, MAX_SEQ_LEN + 1), np.int64)
    targets = np.full((1, MAX_SEQ_LEN + 1), -1, np.int64)
    tokens[0, 1:len(ids) + 1] = ids
    targets[0, :len(ids)] = ids
    targets[0, len(ids)] = 0
    return tokens, targets


def record(image_id, caption, split_id, clipscore, words=WORDS):
    tokens, targets = token_rows(caption, words)
    return dict(image_id=str(image_id), split_id=split_id, tokens_ids=tokens,
                target_ids=targets, clipscore=np.float32(clipscore))


def write_vocabulary(path, words=WORDS):
    with open(path, 'w') as f:
        f.write(''.join(w + '\n' for w in words))
    return path


def write_pickle(path, records):
    with open(path, 'wb') as f:
        pickle.dump(records, f)
    return path


def feature_arrays(image_id, dims=(N, DV, DG)):
    """fp16-representable float32 features, as CLIP in fp16 gives them."""
    num, width, gdim = dims
    rng = np.random.default_rng(int(image_id))
    patch = rng.standard_normal((num, width)).astype(np.float16).astype(
        np.float32)
    glob = rng.standard_normal((1, gdim)).astype(np.float16).astype(
        np.float32)
    return patch, glob


def write_npz(feats_folder, image_id, split_id=None, dims=(N, DV, DG)):
    folder = feats_folder if split_id is None else \
        f'{feats_folder}_sp{split_id}'
    os.makedirs(folder, exist_ok=True)
    patch, glob = feature_arrays(image_id, dims)
    path = osp.join(folder, f'{image_id}.npz')
    np.savez_compressed(path, features=patch, g_feature=glob)
    return path


def make_release(root, captions, splits, cos, words=WORDS,
                 dims=(N, DV, DG)):
    """Vocabulary, train pickle and ``.npz`` folders of a synthetic set:
    image ``6000000 + k`` for caption ``k`` in folder ``splits[k]``."""
    os.makedirs(root, exist_ok=True)
    records = [record(6000000 + k, c, s, 2.5 * x, words)
               for k, (c, s, x) in enumerate(zip(captions, splits, cos))]
    feats = osp.join(root, 'mscoco_sd_feats')
    for r in records:
        write_npz(feats, r['image_id'], r['split_id'], dims)
    return dict(vocabulary=write_vocabulary(osp.join(root, 'vocabulary.txt'),
                                            words),
                train=write_pickle(osp.join(root, 'anno_train.pkl'),
                                   records),
                feats=feats, records=records)


def official_sample(rec, feats_folder, max_feat_num=50, alpha=ALPHA):
    """What the official train loader and loss make of one record:
    ``(att_feats, g_feature, norm_global, tokens, targets, weight)``."""
    path = osp.join(feats_folder + '_sp{}'.format(rec['split_id']),
                    rec['image_id'] + '.npz')
    content = np.load(path)
    att_feats = content['features'][0:max_feat_num].astype('float32')
    global_feat = content['g_feature']
    norm = global_feat / (np.linalg.norm(global_feat) + 1e-9)
    if norm.shape[0] == 1:
        norm = norm.reshape(-1)
    tokens = rec['tokens_ids'][0, :].astype(np.int64)
    targets = rec['target_ids'][0, :].astype(np.int64)
    weight = torch.clamp(torch.as_tensor(rec['clipscore']) / 2.5 * alpha,
                         min=0.0, max=1.0)
    return att_feats, global_feat.reshape(-1), norm, tokens, targets, weight


class RunsCode:
    """Unpickling this runs ``touch <marker>`` (a crafted pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)
