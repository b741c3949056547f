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
the configs. Entry point: ``python projects/mini_world/tools/prepare.py``.
"""
import os
import os.path as osp
import time
from dataclasses import asdict
from functools import partial
from typing import Callable, Dict, Optional

from pcm_plugin.utils.fileio import atomic_write_json, file_sha256

from .mini_clip import CONCEPT_TEMPLATES, MINI_CLIP_NAME
from .world import (
    WorldSettings,
    check_identity,
    check_settings,
    extend_with_prepared,
    resolve_clip,
    synth_name,
    world_identity,
    world_lock,
    world_name,
)
from .world_steps import (
    build_clip,
    build_concepts,
    build_corpus,
    build_real_images,
    build_synth_images,
    build_tokenizer,
    concept_words,
    extract_store_into,
    run_step,
)


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
        progress (bool): Progress bars. Defaults to True.
        rebuild (bool): Replace a different world at the same root.
        log (callable): Message sink. Defaults to ``print``.

    Returns:
        dict: The content of ``world.json``: absolute ``root`` and the
        paths of every artefact relative to it.
    """
    check_settings(settings)
    root = osp.abspath(settings.root)
    identity = world_identity(settings)
    with world_lock(root):
        if not rebuild:
            check_identity(root, identity)
        settings = extend_with_prepared(root, settings, identity)
        return _prepare(settings, root, identity, progress=progress, log=log)


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
        settings = dict(seed=s.seed, num_train=s.num_train,
                        num_val=s.num_val, num_test=s.num_test, refs=s.refs)
        if s.captions_per_scene != 1:  # absent at 1: old stamps still match
            settings['captions_per_scene'] = s.captions_per_scene
        return self.step('corpus', 'corpus', settings,
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
