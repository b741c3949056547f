"""What a prepared mini world is: its settings, its identity (the settings
that make it another world), the lock lanes share, and ``world.json``.

:mod:`.prepare` builds a world from these; every tool that uses one reads
it with :func:`load_world`.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

from pcm_plugin.utils.fileio import file_sha256

from .mini_clip import committed_paths
from .names import DEFAULT_CLIP_KIND, DEFAULT_ROOT


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
        captions_per_scene (int): Training captions per training scene
            (1-7; ``num_train`` must be a multiple): ``num_train / N``
            scenes, each described N times and each caption rendered as its
            own synthetic image with its own defect draw, as COCO has five
            captions per image (SynC's premise: a caption's paraphrases
            have renders to be re-paired with). 1, the default, is every
            world prepared before the option existed.
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
    root: str = DEFAULT_ROOT
    seed: int = 0
    num_train: int = 8000
    num_val: int = 200
    num_test: int = 1000
    refs: int = 5
    captions_per_scene: int = 1
    defect_rates: List[float] = field(default_factory=lambda: [0.3])
    real_train: bool = False
    clip: str = DEFAULT_CLIP_KIND
    clip_config: Optional[str] = None
    clip_checkpoint: Optional[str] = None
    batch_size: int = 128


# Settings that define a world: a prepared world with other values is a
# different world, never rebuilt in place without an explicit ``rebuild``.
# (Defect rates and the real training set only add feature stores.)
IDENTITY_KEYS = ('seed', 'num_train', 'num_val', 'num_test', 'refs',
                 'captions_per_scene', 'clip', 'clip_checkpoint_sha256')
# Identity settings added after worlds were prepared, with the value every
# older world has: an identity leaves them out at that value (so an old
# world.json's identity is this one's, key for key, and nothing is
# rebuilt) and an identity that lacks them reads as that value.
IDENTITY_DEFAULTS = {'captions_per_scene': 1}
# describe_many's distinct templates: 7 describe a three-object scene.
MAX_CAPTIONS_PER_SCENE = 7


class WorldConflict(ValueError):
    """A prepared world exists at the root with other identity settings."""


def world_identity(settings: WorldSettings) -> Dict:
    """The identity settings of a world (what :data:`IDENTITY_KEYS` names),
    with the CLIP given by the checksum of its weights."""
    _, checkpoint = resolve_clip(settings)
    identity = {k: getattr(settings, k) for k in IDENTITY_KEYS[:-2]
                if k not in IDENTITY_DEFAULTS
                or getattr(settings, k) != IDENTITY_DEFAULTS[k]}
    identity['clip'] = settings.clip if settings.clip_checkpoint is None \
        else 'custom'
    identity['clip_checkpoint_sha256'] = file_sha256(checkpoint)
    return identity


def full_identity(identity: Dict) -> Dict:
    """An identity with every :data:`IDENTITY_DEFAULTS` key present."""
    return dict(IDENTITY_DEFAULTS, **identity)


def check_settings(settings: WorldSettings) -> None:
    """Refuse settings no world can be built from.

    Raises:
        ValueError: naming the setting and the fix.
    """
    n = settings.captions_per_scene
    if not 1 <= n <= MAX_CAPTIONS_PER_SCENE:
        raise ValueError(
            f'--captions-per-scene {n}: the templates give 1-'
            f'{MAX_CAPTIONS_PER_SCENE} distinct captions per scene')
    if settings.num_train % n:
        nearest = max(n, settings.num_train // n * n)
        raise ValueError(
            f'--num-train {settings.num_train} is not a multiple of '
            f'--captions-per-scene {n}: the training captions are {n} per '
            f'scene; pass e.g. --num-train {nearest}')


def resolve_clip(settings: WorldSettings) -> tuple:
    """``(config, checkpoint)`` of the world's mini CLIP, checked to exist."""
    default_cfg, default_ckpt = committed_paths(settings.clip)
    paths = (settings.clip_config or default_cfg,
             settings.clip_checkpoint or default_ckpt)
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'mini CLIP file {path} not found; train it with `python '
                'projects/mini_world/tools/train_mini_clip.py` or pass '
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
    old = full_identity(prepared.get('identity') or {
        k: prepared.get('settings', {}).get(k)
        for k in ('seed', 'num_train', 'num_val', 'num_test', 'refs')})
    asked = full_identity(identity)
    differing = [k for k in old if old[k] != asked.get(k)]
    if not differing:
        return
    diff = ', '.join(f'{k}: prepared {old[k]!r} vs asked {asked[k]!r}'
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


def load_world(root: str) -> Dict:
    """The ``world.json`` of a prepared world, with a clear error if none."""
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} not found; prepare the world with '
            '`python projects/mini_world/tools/prepare.py`')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def world_name(identity: Dict) -> str:
    """A short name for result rows: ``'<clip>-seed<seed>'``, with
    ``'-c<N>'`` for N captions per scene (N > 1): another world's rows must
    not pass for this one's finished cells."""
    name = f'{identity["clip"]}-seed{identity["seed"]}'
    per_scene = full_identity(identity)['captions_per_scene']
    return name if per_scene == 1 else f'{name}-c{per_scene}'


def extend_with_prepared(root: str, settings: WorldSettings,
                         identity: Dict) -> WorldSettings:
    """Keep the stores a same-identity world already lists."""
    path = osp.join(root, 'world.json')
    if not osp.isfile(path):
        return settings
    with open(path, encoding='utf-8') as f:
        old = json.load(f)
    if full_identity(old.get('identity') or {}) != full_identity(identity):
        return settings
    rates = sorted(set(settings.defect_rates) |
                   set(old['settings']['defect_rates']))
    return replace(settings, defect_rates=rates,
                   real_train=settings.real_train or
                   old['settings']['real_train'])
