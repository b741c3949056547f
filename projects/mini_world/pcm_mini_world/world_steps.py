"""The steps of a mini world, each one folder built by a function, and
the stamp cache that skips a step whose settings have not changed.

:func:`.prepare.prepare_world` runs them in order; the folder layout is
in its module docstring.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from pcm_plugin.data_prep.annotations import TRAIN_ID_START
from pcm_plugin.utils.fileio import atomic_write_json

from .defects import apply_defect, plan_defect
from .mini_clip import CONCEPT_TEMPLATES, MINI_CLIP_NAME
from .render import render_real, render_synthetic, scene_sprites
from .scenes import Scene, generate_split, world_words
from .world import WorldSettings

STAMP = 'done.json'
STAMP_VERSION = 1
# Image ids: train ids follow the official synthetic numbering
# (docs/method.md §2.1); val/test ids are integers as the COCO metric needs.
ID_START = {'train': TRAIN_ID_START, 'val': 100000, 'test': 200000}
_STYLE_STREAM = 31337


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


# ----------------------------------------------------------------- stamps
def read_stamp(folder: str) -> Optional[Dict]:
    """The ``done.json`` of a step folder, or None."""
    path = osp.join(folder, STAMP)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def run_step(name: str, folder: str, settings: Dict,
             build: Callable[[str], Optional[Dict]],
             log: Callable[[str], None] = print) -> Dict:
    """Run ``build(folder)`` unless ``folder`` holds a matching stamp.

    A stale or partial folder is deleted first, so a rebuild never mixes
    old and new files. The stamp is written last.

    Args:
        name (str): Step name (for messages).
        folder (str): The step's output folder.
        settings (dict): Everything the output depends on (JSON-able),
            including upstream stamps' digests.
        build (callable): Fills the folder; may return extra info to keep
            in the stamp.
        log (callable): Message sink.

    Returns:
        dict: The stamp (``settings``, ``digest``, ``seconds``, ``info``).
    """
    settings = dict(settings, stamp_version=STAMP_VERSION)
    stamp = read_stamp(folder)
    if stamp is not None and stamp.get('settings') == settings:
        log(f'[mini world] {name}: cached ({folder})')
        return stamp
    if osp.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    start = time.time()
    info = build(folder) or {}
    stamp = dict(step=name, settings=settings, digest=_digest(settings),
                 seconds=round(time.time() - start, 1), info=info)
    atomic_write_json(osp.join(folder, STAMP), stamp)
    log(f'[mini world] {name}: built in {stamp["seconds"]} s ({folder})')
    return stamp


# ------------------------------------------------------------------ steps
def _image_id(split: str, index: int) -> str:
    return str(ID_START[split] + index)


def train_scene(image_id: str, captions_per_scene: int) -> int:
    """The scene a training image (= caption) was drawn for."""
    return (int(image_id) - ID_START['train']) // captions_per_scene


def training_corpus(s: WorldSettings) -> Tuple[List[Scene], List[str]]:
    """The training captions and the scene of each (one render each).

    With ``captions_per_scene`` N = 1 (every world prepared before the
    option): one scene per caption and a caption from a random template
    (:func:`~.scenes.describe`), the corpus of those worlds exactly. With
    N > 1: ``num_train / N`` scenes, each described by
    :func:`~.scenes.describe_many`, the function that writes the val/test
    references, so a scene's N captions come from N distinct templates,
    each phrased with its own draws: they differ in wording and in which
    attributes they pin (size named or not, a relation or absolute
    positions, the background or none), as COCO's five captions of one
    image do, and each is still true of the scene. Each of them is drawn
    from a uniform template as a :func:`~.scenes.describe` caption is, so a
    training caption alone is distributed as in an N = 1 world; what N
    changes is that captions share scenes. Scene k of an N > 1 world is
    scene k of the N = 1 world of the same seed (its stream draws the scene
    first).

    Args:
        s (WorldSettings): ``seed``, ``num_train``, ``captions_per_scene``.

    Returns:
        tuple[list[Scene], list[str]]: ``num_train`` scenes (scene-mates
        repeated, consecutive) and their captions; caption ``i`` is image
        ``i`` and its scene is ``i // N`` (:func:`train_scene`).
    """
    n = s.captions_per_scene
    scenes, captions = generate_split('train', s.num_train // n, seed=s.seed,
                                      refs=0 if n == 1 else n)
    return ([scene for scene in scenes for _ in range(n)],
            [c for per_scene in captions for c in per_scene])


def build_corpus(folder: str, s: WorldSettings, progress: bool) -> Dict:
    """Scenes, annotation files and COCO ground truth of all splits.

    Training entries are one per caption, each with its own image id (one
    render per caption, as SynC pairs COCO); ``scenes/train.json`` maps
    every training image id to its scene.
    """
    from pcm_plugin.data_prep.annotations import (
        ImageCaptions,
        coco_ground_truth,
        eval_entries,
    )
    from pcm_plugin.utils.progress import progress_bar
    ann_dir = osp.join(folder, 'annotations')
    scene_dir = osp.join(folder, 'scenes')
    os.makedirs(ann_dir)
    os.makedirs(scene_dir)
    sizes = dict(train=s.num_train, val=s.num_val, test=s.num_test)
    bar = progress_bar(total=sum(sizes.values()), desc='corpus',
                       unit='scene', disable=not progress)
    for split, num in sizes.items():
        ids = [_image_id(split, i) for i in range(num)]
        meta = dict(dataset='mini_world', split=split, seed=s.seed,
                    num_images=num)
        if split == 'train':
            scenes, captions = training_corpus(s)
            data_list = [dict(image_id=i, caption=c)
                         for i, c in zip(ids, captions)]
            meta['num_captions'] = num
            if s.captions_per_scene != 1:
                meta.update(captions_per_scene=s.captions_per_scene,
                            num_scenes=num // s.captions_per_scene)
        else:
            scenes, refs = generate_split(split, num, seed=s.seed,
                                          refs=s.refs)
            meta['num_captions'] = sum(len(c) for c in refs)
            images = [ImageCaptions(image_id=i, file_name=f'{split}/{i}.png',
                                    captions=c)
                      for i, c in zip(ids, refs)]
            data_list = eval_entries(images)
            atomic_write_json(osp.join(ann_dir, f'{split}_gt.json'),
                              coco_ground_truth(images, 'mini world'))
        bar.update(num)
        atomic_write_json(osp.join(ann_dir, f'{split}.json'),
                          dict(metainfo=meta, data_list=data_list))
        atomic_write_json(osp.join(scene_dir, f'{split}.json'),
                          {i: sc.to_dict() for i, sc in zip(ids, scenes)})
    bar.close()
    return sizes


def load_scenes(corpus_dir: str, split: str) -> Dict[str, Scene]:
    """``image_id -> Scene`` of a split written by :func:`build_corpus`."""
    with open(osp.join(corpus_dir, 'scenes', f'{split}.json'),
              encoding='utf-8') as f:
        return {k: Scene.from_dict(v) for k, v in json.load(f).items()}


def _save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(image).save(path, compress_level=1)


def build_real_images(folder: str, corpus_dir: str, splits: Sequence[str],
                      progress: bool, nested: bool = True) -> Dict:
    """Exact renders; ``<folder>/<split>/<id>.png`` (or flat)."""
    from pcm_plugin.utils.progress import progress_bar
    scenes = {split: load_scenes(corpus_dir, split) for split in splits}
    bar = progress_bar(total=sum(len(v) for v in scenes.values()),
                       unit='img', desc=f'real images ({"+".join(splits)})',
                       disable=not progress)
    for split, items in scenes.items():
        out = osp.join(folder, split) if nested else folder
        os.makedirs(out, exist_ok=True)
        for image_id, scene in items.items():
            _save_png(render_real(scene), osp.join(out, f'{image_id}.png'))
            bar.update()
    bar.close()
    return {split: len(v) for split, v in scenes.items()}


def synthetic_image(scene: Scene, index: int, *, rate: float,
                    seed: int) -> tuple:
    """The synthetic image of training caption ``index`` and its defect.

    The style stream depends on ``(seed, index)`` only, the defect on
    :func:`~.defects.plan_defect`; so two rates give identical images
    except where one has a defect and the other has not, and the renders
    of one scene's several captions have their own styles and defects.
    """
    defect = plan_defect(index, len(scene.objects), rate=rate, seed=seed)
    sprites = apply_defect(scene, scene_sprites(scene), defect)
    rng = np.random.default_rng([seed, _STYLE_STREAM, index])
    return render_synthetic(scene, rng=rng, sprites=sprites), defect


def build_synth_images(folder: str, corpus_dir: str, rate: float,
                       seed: int, progress: bool) -> Dict:
    """Synthetic training images at one defect rate + ``defects.json``."""
    from pcm_plugin.utils.progress import progress_bar
    scenes = load_scenes(corpus_dir, 'train')
    defects = {}
    for image_id, scene in progress_bar(
            scenes.items(), desc=f'synthetic images (defect rate {rate})',
            unit='img', disable=not progress):
        index = int(image_id) - ID_START['train']
        image, defect = synthetic_image(scene, index, rate=rate, seed=seed)
        _save_png(image, osp.join(folder, f'{image_id}.png'))
        defects[image_id] = defect
    atomic_write_json(osp.join(folder, 'defects.json'), defects)
    kinds: Dict[str, int] = {}
    for defect in defects.values():
        if defect is not None:
            kinds[defect['type']] = kinds.get(defect['type'], 0) + 1
    return dict(num_images=len(defects), num_defective=sum(kinds.values()),
                defect_types=kinds)


def build_clip(folder: str, config: str, checkpoint: str) -> Dict:
    """Copy the mini CLIP files into the world (stable paths for configs)."""
    shutil.copy(config, osp.join(folder, f'{MINI_CLIP_NAME}.json'))
    shutil.copy(checkpoint, osp.join(folder, f'{MINI_CLIP_NAME}.pt'))
    return dict(source_config=config, source_checkpoint=checkpoint)


def extract_store(ann_file: str, image_dir: str, out_dir: str,
                  clip_dir: str, *, batch_size: int,
                  progress: bool) -> Dict:
    """Features of one annotation file with the project's extractor."""
    from pcm_plugin.data_prep.extraction import extract_features
    return extract_features(
        ann_file, image_dir=image_dir, out_dir=out_dir,
        clip_model=MINI_CLIP_NAME,
        clip_checkpoint=osp.join(clip_dir, f'{MINI_CLIP_NAME}.pt'),
        model_config=osp.join(clip_dir, f'{MINI_CLIP_NAME}.json'),
        batch_size=batch_size, shard_size=4096, workers=0,
        progress=progress)


def concept_words() -> List[str]:
    """The world's concept words: shape nouns, colours, backgrounds."""
    return [w for group in world_words().values() for w in group]


def build_concepts(folder: str, clip_dir: str) -> Dict:
    """Concept bank: what ``tools/build_concepts.py encode`` runs."""
    from pcm_plugin.data_prep.concepts import build_concept_bank
    words_file = osp.join(folder, 'words.txt')
    templates_file = osp.join(folder, 'templates.txt')
    with open(words_file, 'w', encoding='utf-8') as f:
        f.write('\n'.join(concept_words()) + '\n')
    with open(templates_file, 'w', encoding='utf-8') as f:
        f.write('\n'.join(CONCEPT_TEMPLATES) + '\n')
    checkpoint = osp.join(clip_dir, f'{MINI_CLIP_NAME}.pt')
    config = osp.join(clip_dir, f'{MINI_CLIP_NAME}.json')
    out = osp.join(folder, 'concepts.npz')
    build_concept_bank(out, clip_model=MINI_CLIP_NAME, words_file=words_file,
                       templates=templates_file, clip_checkpoint=checkpoint,
                       model_config=config, progress=False)
    return dict(command=(
        f'python tools/build_concepts.py encode --words {words_file} '
        f'--templates {templates_file} --clip-model {MINI_CLIP_NAME} '
        f'--clip-checkpoint {checkpoint} --model-config {config} '
        f'--out {out}'))


def build_tokenizer(folder: str, ann_dir: str) -> Dict:
    """Caption tokenizer: what ``tools/build_vocab.py`` runs."""
    from pcm_plugin.data_prep.vocab import build_tokenizer_file
    train, test = (osp.join(ann_dir, f'{k}.json') for k in ('train', 'test'))
    out = osp.join(folder, 'tokenizer.json')
    stats = build_tokenizer_file(train, out, coverage_anns=[test],
                                 progress=False)
    atomic_write_json(osp.join(folder, 'stats.json'), stats)
    return dict(command=f'python tools/build_vocab.py {train} --out {out} '
                f'--coverage-ann {test}')


def extract_store_into(folder: str, *, ann_file: str, image_dir: str,
                       clip_dir: str, batch_size: int,
                       progress: bool) -> Dict:
    """:func:`extract_store` with the output folder first (a step build)."""
    return extract_store(ann_file, image_dir, folder, clip_dir,
                         batch_size=batch_size, progress=progress)
