"""Build the mini world's data directory, step by step, with a cache.

Steps (each writes one folder and a ``done.json`` stamp holding the
settings that produced it; a step whose stamp matches is skipped, a
changed setting rebuilds that step and every step downstream of it)::

    corpus        annotations/ (train, val, test, *_gt) + scenes/
    real images   images/real/{val,test}/<id>.png  [+ images/real_train/]
    synth images  images/synth_dXXX/<id>.png + defects.json, per rate
    clip          clip/pcm-mini-clip.{json,pt} (the committed model)
    features      features/{val,test,synth_dXXX[,real_train]}/
    concepts      concepts/{words.txt,templates.txt,concepts.npz}
    tokenizer     tokenizer/tokenizer.json

``world.json`` at the root lists every path (relative to the root) for
the configs. Entry point: ``python tools/mini_world/prepare.py``.
"""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from pcm_plugin.datasets.feature_store import atomic_write_json
from pcm_plugin.utils.fileio import file_sha256
from .defects import apply_defect, plan_defect
from .mini_clip import (CONCEPT_TEMPLATES, MINI_CLIP_NAME, committed_paths)
from .render import render_real, render_synthetic, scene_sprites
from .scenes import Scene, generate_split, world_words

STAMP = 'done.json'
STAMP_VERSION = 1
# Image ids: train ids follow the official synthetic numbering
# (method.md §2.1); val/test ids are integers as the COCO metric needs.
ID_START = {'train': 6000000, 'val': 100000, 'test': 200000}
_STYLE_STREAM = 31337


@dataclass
class WorldSettings:
    """What the mini world is made of.

    Args:
        root (str): Data directory. Defaults to ``data/mini_world``.
        seed (int): Seed of scenes, captions, styles and defects.
        num_train (int): Training captions (one synthetic image each).
        num_val (int): Validation images.
        num_test (int): Test images.
        refs (int): Reference captions per val/test image (at most 7).
        defect_rates (list[float]): Synthetic training sets to build.
        real_train (bool): Also render and extract the training scenes
            with the real renderer (the train-on-real upper bound).
        clip_config (str, optional): Mini CLIP config JSON; committed one
            when None.
        clip_checkpoint (str, optional): Mini CLIP weights; committed ones
            when None.
        batch_size (int): Feature-extraction batch size.
    """
    root: str = 'data/mini_world'
    seed: int = 0
    num_train: int = 8000
    num_val: int = 200
    num_test: int = 300
    refs: int = 5
    defect_rates: List[float] = field(default_factory=lambda: [0.3])
    real_train: bool = False
    clip_config: Optional[str] = None
    clip_checkpoint: Optional[str] = None
    batch_size: int = 128


def synth_name(rate: float) -> str:
    """Folder name of a defect rate: 0.3 -> ``'synth_d030'``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f'defect rate {rate} is not in [0, 1]')
    return f'synth_d{int(round(rate * 100)):03d}'


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


def build_corpus(folder: str, s: WorldSettings, progress: bool) -> Dict:
    """Scenes, annotation files and COCO ground truth of all splits."""
    from tqdm import tqdm
    from pcm_plugin.data_pipeline.annotations import (ImageCaptions,
                                                      coco_ground_truth,
                                                      eval_entries)
    ann_dir = osp.join(folder, 'annotations')
    scene_dir = osp.join(folder, 'scenes')
    os.makedirs(ann_dir)
    os.makedirs(scene_dir)
    sizes = dict(train=s.num_train, val=s.num_val, test=s.num_test)
    bar = tqdm(total=sum(sizes.values()), desc='corpus', unit='scene',
               disable=not progress)
    for split, num in sizes.items():
        refs = 0 if split == 'train' else s.refs
        scenes, captions = generate_split(split, num, seed=s.seed,
                                          refs=refs)
        bar.update(num)
        ids = [_image_id(split, i) for i in range(num)]
        meta = dict(dataset='mini_world', split=split, seed=s.seed,
                    num_images=num,
                    num_captions=sum(len(c) for c in captions))
        if split == 'train':
            data_list = [dict(image_id=i, caption=c[0])
                         for i, c in zip(ids, captions)]
        else:
            images = [ImageCaptions(image_id=i, file_name=f'{split}/{i}.png',
                                    captions=c)
                      for i, c in zip(ids, captions)]
            data_list = eval_entries(images)
            atomic_write_json(osp.join(ann_dir, f'{split}_gt.json'),
                              coco_ground_truth(images, 'mini world'))
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
    from tqdm import tqdm
    scenes = {split: load_scenes(corpus_dir, split) for split in splits}
    bar = tqdm(total=sum(len(v) for v in scenes.values()), unit='img',
               desc=f'real images ({"+".join(splits)})',
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
    """The synthetic image of training scene ``index`` and its defect.

    The style stream depends on ``(seed, index)`` only, the defect on
    :func:`~.defects.plan_defect`; so two rates give identical images
    except where one has a defect and the other has not.
    """
    defect = plan_defect(index, len(scene.objects), rate=rate, seed=seed)
    sprites = apply_defect(scene, scene_sprites(scene), defect)
    rng = np.random.default_rng([seed, _STYLE_STREAM, index])
    return render_synthetic(scene, rng=rng, sprites=sprites), defect


def build_synth_images(folder: str, corpus_dir: str, rate: float,
                       seed: int, progress: bool) -> Dict:
    """Synthetic training images at one defect rate + ``defects.json``."""
    from tqdm import tqdm
    scenes = load_scenes(corpus_dir, 'train')
    defects = {}
    for image_id, scene in tqdm(scenes.items(), desc=f'synthetic images '
                                f'(defect rate {rate})', unit='img',
                                disable=not progress):
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
    from pcm_plugin.data_pipeline.extraction import extract_features
    return extract_features(
        ann_file, image_dir=image_dir, out_dir=out_dir,
        clip_model=MINI_CLIP_NAME,
        clip_checkpoint=osp.join(clip_dir, f'{MINI_CLIP_NAME}.pt'),
        model_config=osp.join(clip_dir, f'{MINI_CLIP_NAME}.json'),
        batch_size=batch_size, shard_size=4096, workers=0,
        progress=progress)


def _load_tool(name: str):
    """Import ``tools/<name>.py`` of this repository as a module."""
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    path = osp.join(repo, 'tools', f'{name}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: the mini world uses the repository tools; '
            'run it from a source checkout of pcm_plugin')
    spec = importlib.util.spec_from_file_location(f'_pcm_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_tool(name: str, argv: List[str]) -> Dict:
    """Run ``tools/<name>.py`` in-process; raise if it fails.

    Returns:
        dict: ``command``, the equivalent command line (kept in the stamp).
    """
    command = f'python tools/{name}.py ' + ' '.join(argv)
    code = _load_tool(name).main(argv)
    if code:
        raise RuntimeError(f'{command} failed (exit {code})')
    return dict(command=command)


def concept_words() -> List[str]:
    """The world's concept words: shape nouns, colours, backgrounds."""
    return [w for group in world_words().values() for w in group]


def build_concepts(folder: str, clip_dir: str) -> Dict:
    """Concept bank via ``tools/build_concepts.py encode``."""
    words_file = osp.join(folder, 'words.txt')
    templates_file = osp.join(folder, 'templates.txt')
    with open(words_file, 'w', encoding='utf-8') as f:
        f.write('\n'.join(concept_words()) + '\n')
    with open(templates_file, 'w', encoding='utf-8') as f:
        f.write('\n'.join(CONCEPT_TEMPLATES) + '\n')
    argv = ['encode', '--words', words_file, '--templates', templates_file,
            '--clip-model', MINI_CLIP_NAME,
            '--clip-checkpoint', osp.join(clip_dir, f'{MINI_CLIP_NAME}.pt'),
            '--model-config', osp.join(clip_dir, f'{MINI_CLIP_NAME}.json'),
            '--out', osp.join(folder, 'concepts.npz')]
    return _run_tool('build_concepts', argv)


def build_tokenizer(folder: str, ann_dir: str) -> Dict:
    """Caption tokenizer via ``tools/build_vocab.py``."""
    argv = [osp.join(ann_dir, 'train.json'),
            '--out', osp.join(folder, 'tokenizer.json'),
            '--coverage-ann', osp.join(ann_dir, 'test.json'),
            '--stats-out', osp.join(folder, 'stats.json')]
    return _run_tool('build_vocab', argv)


# ------------------------------------------------------------ orchestrate
def load_world(root: str) -> Dict:
    """The ``world.json`` of a prepared world, with a clear error if none."""
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found; prepare the world with '
                                '`python tools/mini_world/prepare.py`')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def prepare_world(settings: WorldSettings, *, progress: bool = True,
                  log: Callable[[str], None] = print) -> Dict:
    """Build (or reuse) every step of the mini world.

    Args:
        settings (WorldSettings): What to build.
        progress (bool): tqdm bars. Defaults to True.
        log (callable): Message sink. Defaults to ``print``.

    Returns:
        dict: The content of ``world.json``: absolute ``root`` and the
        paths of every artefact relative to it.
    """
    s = settings
    root = osp.abspath(s.root)
    os.makedirs(root, exist_ok=True)
    start = time.time()
    seconds: Dict[str, float] = {}

    def step(name, folder, step_settings, build):
        t0 = time.time()
        stamp = run_step(name, osp.join(root, folder), step_settings,
                         build, log)
        seconds[name] = round(time.time() - t0, 1)
        return stamp

    corpus = step('corpus', 'corpus', dict(
        seed=s.seed, num_train=s.num_train, num_val=s.num_val,
        num_test=s.num_test, refs=s.refs),
        lambda d: build_corpus(d, s, progress))
    corpus_dir = osp.join(root, 'corpus')
    ann_dir = osp.join(corpus_dir, 'annotations')
    real = step('real images', 'images/real', dict(corpus=corpus['digest']),
                lambda d: build_real_images(d, corpus_dir, ('val', 'test'),
                                            progress))
    image_stamps = {}
    for rate in s.defect_rates:
        name = synth_name(rate)
        image_stamps[name] = step(
            f'synthetic images {rate}', f'images/{name}',
            dict(corpus=corpus['digest'], rate=rate, seed=s.seed),
            lambda d, r=rate: build_synth_images(d, corpus_dir, r, s.seed,
                                                 progress))
    if s.real_train:
        image_stamps['real_train'] = step(
            'real training images', 'images/real_train',
            dict(corpus=corpus['digest']),
            lambda d: build_real_images(d, corpus_dir, ('train',), progress,
                                        nested=False))

    default_cfg, default_ckpt = committed_paths()
    clip_cfg = s.clip_config or default_cfg
    clip_ckpt = s.clip_checkpoint or default_ckpt
    for path in (clip_cfg, clip_ckpt):
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'mini CLIP file {path} not found; train it with `python '
                'tools/mini_world/train_mini_clip.py` or pass '
                '--clip-config/--clip-checkpoint')
    clip = step('mini CLIP', 'clip', dict(
        config_sha256=file_sha256(clip_cfg),
        checkpoint_sha256=file_sha256(clip_ckpt)),
        lambda d: build_clip(d, clip_cfg, clip_ckpt))
    clip_dir = osp.join(root, 'clip')

    stores = dict(val=('val', osp.join(root, 'images/real'), real),
                  test=('test', osp.join(root, 'images/real'), real))
    for name, stamp in image_stamps.items():
        stores[name] = ('train', osp.join(root, 'images', name), stamp)
    for name, (split, image_dir, stamp) in stores.items():
        step(f'features {name}', f'features/{name}', dict(
            clip=clip['digest'], images=stamp['digest'],
            corpus=corpus['digest'], batch_size=s.batch_size),
            lambda d, sp=split, im=image_dir: extract_store(
                osp.join(ann_dir, f'{sp}.json'), im, d, clip_dir,
                batch_size=s.batch_size, progress=progress))
    step('concept bank', 'concepts', dict(
        clip=clip['digest'], words=concept_words(),
        templates=list(CONCEPT_TEMPLATES)),
        lambda d: build_concepts(d, clip_dir))
    step('tokenizer', 'tokenizer', dict(corpus=corpus['digest']),
         lambda d: build_tokenizer(d, ann_dir))

    world = dict(
        root=root, settings=asdict(s),
        annotations={k: f'corpus/annotations/{k}.json'
                     for k in ('train', 'val', 'test', 'val_gt', 'test_gt')},
        images=dict(real='images/real', **{
            k: f'images/{k}' for k in image_stamps}),
        features={k: f'features/{k}' for k in stores},
        clip=dict(name=MINI_CLIP_NAME,
                  config=f'clip/{MINI_CLIP_NAME}.json',
                  checkpoint=f'clip/{MINI_CLIP_NAME}.pt'),
        concept_bank='concepts/concepts.npz',
        tokenizer='tokenizer/tokenizer.json',
        seconds=dict(seconds, total=round(time.time() - start, 1)))
    atomic_write_json(osp.join(root, 'world.json'), world)
    log(f'[mini world] ready in {world["seconds"]["total"]} s: {root}')
    return world
