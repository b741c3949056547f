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
import json
import os
import os.path as osp
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from pcm_plugin.data_prep.annotations import TRAIN_ID_START
from pcm_plugin.utils.fileio import atomic_write_json, file_sha256

from .defects import apply_defect, plan_defect
from .mini_clip import (
    CONCEPT_TEMPLATES,
    DEFAULT_CLIP_KIND,
    MINI_CLIP_NAME,
    committed_paths,
)
from .render import render_real, render_synthetic, scene_sprites
from .scenes import Scene, generate_split, world_words

STAMP = 'done.json'
STAMP_VERSION = 1
# Image ids: train ids follow the official synthetic numbering
# (docs/method.md §2.1); val/test ids are integers as the COCO metric needs.
ID_START = {'train': TRAIN_ID_START, 'val': 100000, 'test': 200000}
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
        clip (str): Which committed mini CLIP sees the world: a key of
            :data:`~.mini_clip.CLIP_KINDS` (``'localized'``, the default,
            or ``'weak'``).
        clip_config (str, optional): Mini CLIP config JSON; overrides
            ``clip`` (with ``clip_checkpoint``).
        clip_checkpoint (str, optional): Mini CLIP weights; overrides
            ``clip``.
        batch_size (int): Feature-extraction batch size.
    """
    root: str = 'data/mini_world'
    seed: int = 0
    num_train: int = 8000
    num_val: int = 200
    num_test: int = 1000
    refs: int = 5
    defect_rates: List[float] = field(default_factory=lambda: [0.3])
    real_train: bool = False
    clip: str = DEFAULT_CLIP_KIND
    clip_config: Optional[str] = None
    clip_checkpoint: Optional[str] = None
    batch_size: int = 128


# Settings that define a world: a prepared world with other values is a
# different world, never rebuilt in place without an explicit ``rebuild``.
# (Defect rates and the real training set only add feature stores.)
IDENTITY_KEYS = ('seed', 'num_train', 'num_val', 'num_test', 'refs', 'clip',
                 'clip_checkpoint_sha256')


class WorldConflict(ValueError):
    """A prepared world exists at the root with other identity settings."""


def world_identity(settings: 'WorldSettings') -> Dict:
    """The identity settings of a world (what :data:`IDENTITY_KEYS` names),
    with the CLIP given by the checksum of its weights."""
    _, checkpoint = resolve_clip(settings)
    identity = {k: getattr(settings, k) for k in IDENTITY_KEYS[:-2]}
    identity['clip'] = settings.clip if settings.clip_checkpoint is None \
        else 'custom'
    identity['clip_checkpoint_sha256'] = file_sha256(checkpoint)
    return identity


def resolve_clip(settings: 'WorldSettings') -> tuple:
    """``(config, checkpoint)`` of the world's mini CLIP, checked to exist."""
    default_cfg, default_ckpt = committed_paths(settings.clip)
    paths = (settings.clip_config or default_cfg,
             settings.clip_checkpoint or default_ckpt)
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'mini CLIP file {path} not found; train it with `python '
                'tools/mini_world/train_mini_clip.py` or pass '
                '--clip-config/--clip-checkpoint')
    return paths


def check_identity(root: str, identity: Dict) -> None:
    """Refuse to overwrite a prepared world that is another world.

    Raises:
        WorldConflict: naming every differing setting and the fixes.
    """
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        return
    with open(path, encoding='utf-8') as f:
        prepared = json.load(f)
    # Worlds prepared before identities existed: compare their settings.
    old = prepared.get('identity') or {
        k: prepared.get('settings', {}).get(k)
        for k in ('seed', 'num_train', 'num_val', 'num_test', 'refs')}
    differing = [k for k in old if old[k] != identity.get(k)]
    if not differing:
        return
    diff = ', '.join(f'{k}: prepared {old[k]!r} vs asked {identity[k]!r}'
                     for k in differing)
    raise WorldConflict(
        f'{root} holds another prepared world ({diff}). Use another --root, '
        'pass the prepared settings, or --rebuild to replace it')


class world_lock:
    """Exclusive lock on a world root (``.lock``): lanes sharing a world
    wait for each other's preparation instead of racing in it."""

    def __init__(self, root: str):
        self.path = osp.join(root, '.lock')

    def __enter__(self):
        import fcntl
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        self.file = open(self.path, 'w')
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


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

    from pcm_plugin.data_prep.annotations import (
        ImageCaptions,
        coco_ground_truth,
        eval_entries,
    )
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


# ------------------------------------------------------------ orchestrate
def load_world(root: str) -> Dict:
    """The ``world.json`` of a prepared world, with a clear error if none."""
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found; prepare the world with '
                                '`python tools/mini_world/prepare.py`')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def world_name(identity: Dict) -> str:
    """A short name for result rows: ``'<clip>-seed<seed>'``."""
    return f'{identity["clip"]}-seed{identity["seed"]}'


def prepare_world(settings: WorldSettings, *, progress: bool = True,
                  rebuild: bool = False,
                  log: Callable[[str], None] = print) -> Dict:
    """Build (or reuse) every step of the mini world.

    A world already prepared at the root with other identity settings
    (:data:`IDENTITY_KEYS`) is refused unless ``rebuild``; its defect rates
    and real training set are kept and extended, never dropped. The root is
    locked while preparing, so several lanes may call this at once.

    Args:
        settings (WorldSettings): What to build.
        progress (bool): tqdm bars. Defaults to True.
        rebuild (bool): Replace a different world at the same root.
        log (callable): Message sink. Defaults to ``print``.

    Returns:
        dict: The content of ``world.json``: absolute ``root`` and the
        paths of every artefact relative to it.
    """
    root = osp.abspath(settings.root)
    identity = world_identity(settings)
    with world_lock(root):
        if not rebuild:
            check_identity(root, identity)
        settings = _extend_with_prepared(root, settings, identity)
        return _prepare(settings, root, identity, progress=progress, log=log)


def _extend_with_prepared(root: str, settings: WorldSettings,
                          identity: Dict) -> WorldSettings:
    """Keep the stores a same-identity world already lists."""
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        return settings
    with open(path, encoding='utf-8') as f:
        old = json.load(f)
    if old.get('identity') != identity:
        return settings
    rates = sorted(set(settings.defect_rates) |
                   set(old['settings']['defect_rates']))
    return replace(settings, defect_rates=rates,
                   real_train=settings.real_train or
                   old['settings']['real_train'])


class _WorldBuilder:
    """The steps of :func:`prepare_world`, in order, each one method.

    Every step is :func:`run_step` on one folder with the settings its
    output depends on (upstream steps enter through their stamps'
    digests), so a changed setting rebuilds that step and what follows.
    """

    def __init__(self, s: WorldSettings, root: str, *, progress: bool,
                 log: Callable[[str], None]):
        self.s, self.root, self.progress, self.log = s, root, progress, log
        self.corpus_dir = osp.join(root, 'corpus')
        self.ann_dir = osp.join(self.corpus_dir, 'annotations')
        self.clip_dir = osp.join(root, 'clip')
        self.seconds: Dict[str, float] = {}

    def step(self, name: str, folder: str, settings: Dict,
             build: Callable[[str], Optional[Dict]]) -> Dict:
        start = time.time()
        stamp = run_step(name, osp.join(self.root, folder), settings, build,
                         self.log)
        self.seconds[name] = round(time.time() - start, 1)
        return stamp

    def corpus(self) -> Dict:
        s = self.s
        return self.step('corpus', 'corpus', dict(
            seed=s.seed, num_train=s.num_train, num_val=s.num_val,
            num_test=s.num_test, refs=s.refs),
            partial(build_corpus, s=s, progress=self.progress))

    def real_images(self, corpus: Dict) -> Dict:
        return self.step(
            'real images', 'images/real', dict(corpus=corpus['digest']),
            partial(build_real_images, corpus_dir=self.corpus_dir,
                    splits=('val', 'test'), progress=self.progress))

    def training_images(self, corpus: Dict) -> Dict[str, Dict]:
        """Synthetic sets per defect rate (+ real renders): name -> stamp."""
        stamps = {}
        for rate in self.s.defect_rates:
            name = synth_name(rate)
            stamps[name] = self.step(
                f'synthetic images {rate}', f'images/{name}',
                dict(corpus=corpus['digest'], rate=rate, seed=self.s.seed),
                partial(build_synth_images, corpus_dir=self.corpus_dir,
                        rate=rate, seed=self.s.seed, progress=self.progress))
        if self.s.real_train:
            stamps['real_train'] = self.step(
                'real training images', 'images/real_train',
                dict(corpus=corpus['digest']),
                partial(build_real_images, corpus_dir=self.corpus_dir,
                        splits=('train',), progress=self.progress,
                        nested=False))
        return stamps

    def clip(self) -> Dict:
        config, checkpoint = resolve_clip(self.s)
        return self.step('mini CLIP', 'clip', dict(
            config_sha256=file_sha256(config),
            checkpoint_sha256=file_sha256(checkpoint)),
            partial(build_clip, config=config, checkpoint=checkpoint))

    def features(self, name: str, split: str, image_dir: str, *,
                 images: Dict, corpus: Dict, clip: Dict) -> Dict:
        return self.step(f'features {name}', f'features/{name}', dict(
            clip=clip['digest'], images=images['digest'],
            corpus=corpus['digest'], batch_size=self.s.batch_size),
            partial(extract_store_into,
                    ann_file=osp.join(self.ann_dir, f'{split}.json'),
                    image_dir=image_dir, clip_dir=self.clip_dir,
                    batch_size=self.s.batch_size, progress=self.progress))

    def concepts(self, clip: Dict) -> Dict:
        return self.step('concept bank', 'concepts', dict(
            clip=clip['digest'], words=concept_words(),
            templates=list(CONCEPT_TEMPLATES)),
            partial(build_concepts, clip_dir=self.clip_dir))

    def tokenizer(self, corpus: Dict) -> Dict:
        return self.step('tokenizer', 'tokenizer',
                         dict(corpus=corpus['digest']),
                         partial(build_tokenizer, ann_dir=self.ann_dir))


def extract_store_into(folder: str, *, ann_file: str, image_dir: str,
                       clip_dir: str, batch_size: int,
                       progress: bool) -> Dict:
    """:func:`extract_store` with the output folder first (a step build)."""
    return extract_store(ann_file, image_dir, folder, clip_dir,
                         batch_size=batch_size, progress=progress)


def _prepare(s: WorldSettings, root: str, identity: Dict, *, progress: bool,
             log: Callable[[str], None]) -> Dict:
    os.makedirs(root, exist_ok=True)
    start = time.time()
    b = _WorldBuilder(s, root, progress=progress, log=log)
    corpus = b.corpus()
    real = b.real_images(corpus)
    training = b.training_images(corpus)
    clip = b.clip()
    real_dir = osp.join(root, 'images/real')
    stores = dict(val=('val', real_dir, real), test=('test', real_dir, real))
    for name, stamp in training.items():
        stores[name] = ('train', osp.join(root, 'images', name), stamp)
    for name, (split, image_dir, images) in stores.items():
        b.features(name, split, image_dir, images=images, corpus=corpus,
                   clip=clip)
    b.concepts(clip)
    b.tokenizer(corpus)

    world = dict(
        root=root, name=world_name(identity), identity=identity,
        settings=asdict(s),
        annotations={k: f'corpus/annotations/{k}.json'
                     for k in ('train', 'val', 'test', 'val_gt', 'test_gt')},
        images=dict(real='images/real', **{
            k: f'images/{k}' for k in training}),
        features={k: f'features/{k}' for k in stores},
        clip=dict(name=MINI_CLIP_NAME,
                  config=f'clip/{MINI_CLIP_NAME}.json',
                  checkpoint=f'clip/{MINI_CLIP_NAME}.pt'),
        concept_bank='concepts/concepts.npz',
        tokenizer='tokenizer/tokenizer.json',
        seconds=dict(b.seconds, total=round(time.time() - start, 1)))
    atomic_write_json(osp.join(root, 'world.json'), world)
    log(f'[mini world] ready in {world["seconds"]["total"]} s: {root}')
    return world
