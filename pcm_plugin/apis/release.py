"""Released models: one folder that captions and tests on its own.

A training checkpoint is a pickle (optimizer, message hub, RNG states) that
needs the training machine's tokenizer, concept bank and CLIP files to be
rebuilt. :func:`publish_model` turns it into a folder nothing is unpickled
from::

    RELEASE/
      model.safetensors      every model tensor (the frozen CLIP head too)
      config.py              the config, its model files pointing into
                             this folder through {{ fileDirname }}
      tokenizer.json         the caption vocabulary (a language model's
                             own tokenizer: a folder tokenizer/ of its
                             tokenizer files)
      concept_bank.npz       the concept bank (swappable for cross-domain
                             tests: set model.mixup.concept_bank)
      clip_head.safetensors  CLIP's ln_post + proj, to build the model
      README.md              the model card: training data, scores, use
      release.json           name, source (file names), sha256 of every
                             file

Or one file, ``RELEASE.safetensors``: the same tensors plus the tokenizer
and the concept bank as tensors, and the config (files set to
``'from_weights'``) as JSON, the manifest and the model card in the
safetensors metadata.

A one-file release is data only, safe to accept from anyone: its config
is parsed as JSON (nothing executed) and every ``type`` in it must name a
registered component (mmengine would otherwise import and call a dotted
name such as ``'subprocess.run'``). A folder release's ``config.py`` is
Python and runs when it is loaded, as every OpenMMLab config does: load
folders only from people you trust. One-file releases written before the
JSON format kept the config as Python text; they are read only behind the
checkpoint trust switch (``--trust-checkpoint``, ``PCM_TRUST_CHECKPOINT``).

``tools/test.py RELEASE``, ``tools/caption_image.py RELEASE images...``,
``ImageCaptioner(RELEASE)`` and ``mmpretrain.get_model(ZOO_NAME,
pretrained=RELEASE.safetensors)`` load either (:func:`resolve_release`).
Captioning raw images needs the CLIP image tower named by ``clip_model``;
``--with-clip`` ships it (a folder gets a copy of the open_clip files, one
file the image tower's weights, open_clip config and preprocessing), so
the release captions images with no other file.

A model that re-ranks its beams with CLIP (``model.reranker``) needs that
CLIP's text tower at test time, so it is released only ``--with-clip``,
and then re-ranks on its own: a folder's ``model.reranker`` points at the
copied open_clip files (one copy when they are ``clip_model``'s), one file
carries the text tower as tensors (``clip_text_tower.*``) with the
architecture as data in its config. Without ``--with-clip`` publishing is
refused (the config would name CLIP files of the publishing machine),
unless the re-ranker is left out (``with_reranker=False``,
``--without-reranker``): the release then captions with plain beam search.
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, Optional, Tuple, Union

import mmengine.registry as root_registries
import torch
from mmengine.config import Config
from mmengine.registry import Registry
from mmengine.runner import load_checkpoint
from safetensors.torch import save_file

from pcm_plugin.clip.clip_features import load_open_clip
from pcm_plugin.clip.release_tower import (
    CLIP_KEY,
    CLIP_TOWER_PREFIX,
    load_release_clip,
    safetensors_metadata,
)
from pcm_plugin.datasets.feature_layout import fill_feature_layout
from pcm_plugin.engine.checkpoint import (
    TRUST_ENV,
    check_checkpoint_matches,
    checkpoints_trusted,
)
from pcm_plugin.models.clip_head import HEAD_KEYS
from pcm_plugin.models.clip_reranker import TEXT_TOWER_PREFIX
from pcm_plugin.models.pcm_mixup import FROM_WEIGHTS
from pcm_plugin.models.tokenizer import HF_TOKENIZER_CONFIG, tokenizer_files
from pcm_plugin.registry import MODELS
from pcm_plugin.utils.fileio import atomic_path, file_sha256

from .model_card import CARD, MODEL_CARD_KEY, model_card

WEIGHTS = 'model.safetensors'
CONFIG = 'config.py'
MANIFEST = 'release.json'
TOKENIZER_DIR = 'tokenizer'  # a language model's tokenizer files
HERE = '{{ fileDirname }}'
MARKER = '@@RELEASE_DIR@@'  # stands for HERE while the config is edited
# safetensors metadata of a one-file release
CONFIG_KEY = 'pcm_plugin.config.json'  # the config, as JSON
PYTHON_CONFIG_KEY = 'pcm_plugin.config'  # the old format: Python text
MANIFEST_KEY = 'pcm_plugin.release'
# Config dicts whose ``type`` is an option, not a registered component.
OPTION_TYPES = {'clip_grad': ('norm', 'value')}  # mmengine's OptimWrapper


def names_a_release(path) -> bool:
    """Whether ``path`` is shaped like a release (a folder or a
    ``.safetensors`` file) rather than a config; :func:`resolve_release`
    says clearly what is wrong if it is not one."""
    return isinstance(path, str) and (osp.isdir(path)
                                      or path.endswith('.safetensors'))


def is_release(path: str) -> bool:
    """Whether ``path`` is a release written by :func:`publish_model`."""
    if osp.isfile(path) and path.endswith('.safetensors'):
        return bool({CONFIG_KEY, PYTHON_CONFIG_KEY} &
                    set(safetensors_metadata(path)))
    return osp.isdir(path) and osp.isfile(osp.join(path, WEIGHTS)) and \
        osp.isfile(osp.join(path, CONFIG))


def resolve_release(path: str) -> Tuple[Union[str, Config], str]:
    """``(config, weights)`` of a released model: a folder (config path)
    or one ``.safetensors`` file (the config from its metadata).

    Raises:
        FileNotFoundError: ``path`` is not a release (naming what is
            missing).
    """
    if osp.isfile(path) and path.endswith('.safetensors'):
        meta = safetensors_metadata(path)
        if CONFIG_KEY in meta:
            return config_from_json(meta[CONFIG_KEY], path), path
        if PYTHON_CONFIG_KEY in meta:
            return _python_config(meta[PYTHON_CONFIG_KEY], path), path
        raise FileNotFoundError(
            f'{path} is not a one-file release (no {CONFIG_KEY!r} in '
            'its metadata); write one with tools/publish_model.py '
            'CONFIG CHECKPOINT OUT.safetensors')
    missing = [name for name in (CONFIG, WEIGHTS)
               if not osp.isfile(osp.join(path, name))]
    if not osp.isdir(path) or missing:
        raise FileNotFoundError(
            f'{path} is not a released model: it lacks '
            f'{missing or [CONFIG, WEIGHTS]}. Write one with '
            'tools/publish_model.py CONFIG CHECKPOINT OUT_DIR')
    return osp.join(path, CONFIG), osp.join(path, WEIGHTS)


def config_to_json(cfg: Config) -> str:
    """The config as JSON text: data that is read without running it.

    Raises:
        ValueError: the config holds a value JSON cannot store (a class
            or function of a lazy-import config).
    """
    try:
        return json.dumps(cfg.to_dict())
    except TypeError as err:
        raise ValueError(
            f'a one-file release keeps its config as JSON, and this config '
            f'holds a value that is not data ({err}); write its types as '
            'registered names (type=\'PCMCaptioner\'), or publish a '
            'folder release') from None


def config_from_json(text: str, source: str) -> Config:
    """A release's JSON config, checked to be data before it is used.

    Args:
        text (str): The JSON text.
        source (str): The file it came from, for messages.

    Raises:
        ValueError: the text is not a JSON object, or names a ``type``
            no registry holds (:func:`check_registered_types`).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'{source}: the config in its metadata is not '
                         f'valid JSON ({err})') from None
    if not isinstance(data, dict):
        raise ValueError(f'{source}: the config in its metadata is not a '
                         f'JSON object but {type(data).__name__}')
    check_registered_types(data, source)
    return Config(data)


def registered_types() -> Tuple[set, set]:
    """``(names, scopes)``: every name a ``type`` can take that some
    OpenMMLab registry holds (bare and ``scope.name``), and the scopes."""
    # `import pcm_plugin`, which runs before any of its modules, registered
    # the components.
    names, scopes = set(), set()
    pending = [r for r in vars(root_registries).values()
               if isinstance(r, Registry)]
    while pending:
        registry = pending.pop()
        registry.import_from_location()
        scopes.add(registry.scope)
        names.update(registry.module_dict)
        names.update(f'{registry.scope}.{name}'
                     for name in registry.module_dict)
        pending.extend(registry.children.values())
    return names, scopes


def check_registered_types(data, source: str) -> None:
    """Refuse a config whose ``type`` or scope names anything but a
    registered component.

    mmengine builds ``dict(type=NAME)`` by importing ``NAME`` as a dotted
    path when no registry holds it (``'subprocess.run'`` would be called
    with the dict's other keys), and imports ``SCOPE.registry`` for an
    unknown ``_scope_``; in a file from someone else both run code.

    Raises:
        ValueError: naming the file and the first offending values.
    """
    names, scopes = registered_types()
    bad = []

    def visit(node, key=None) -> None:
        if isinstance(node, dict):
            kind = node.get('type')
            if 'type' in node and kind not in names and \
                    kind not in OPTION_TYPES.get(key, ()):
                bad.append(kind)
            scope = node.get('_scope_', node.get('default_scope'))
            if scope is not None and scope not in scopes:
                bad.append(scope)
            for name, value in node.items():
                visit(value, name)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(data)
    if bad:
        raise ValueError(
            f'{source}: its config names {bad[:3]} as a component type or '
            'scope, which no registry holds; mmengine would import and call '
            'it, so the release is refused. Only registered names are '
            'accepted in a one-file release')


def _python_config(text: str, source: str) -> Config:
    """The config of an old one-file release (Python text, which runs
    when it is read): only behind the checkpoint trust switch."""
    if not checkpoints_trusted():
        raise ValueError(
            f'{source} is a one-file release in the old format: its config '
            'is Python text, which would run when read. Load it only if '
            'you trust the file: pass --trust-checkpoint (or set '
            f'{TRUST_ENV}=1); tools/publish_model.py now writes the config '
            'as JSON, which runs nothing')
    return Config.fromstring(text, '.py')


def _model_files(cfg: Config) -> Dict[str, Optional[str]]:
    """Config key -> file the model needs at build time (None: unused)."""
    uses_mixup = cfg.model.mixup.get('mode', 'top') != 'none'
    return {
        'model.tokenizer': cfg.model.tokenizer,
        'model.mixup.concept_bank':
            cfg.model.mixup.get('concept_bank') if uses_mixup else None,
        'model.mixup.clip_head':
            cfg.model.mixup.get('clip_head') if uses_mixup else None,
    }


def _release_config_text(cfg: Config, files: Dict[str, Optional[str]]
                         ) -> str:
    """The config, its model files pointing into the release folder."""
    cfg = Config(cfg.to_dict())
    cfg.merge_from_dict({key: None if name is None else f'{MARKER}/{name}'
                         for key, name in files.items()})
    text = cfg.pretty_text.replace(MARKER, HERE)
    return ('# A released PCM-Net model (tools/publish_model.py). Its model '
            'files\n# are read from this folder ({{ fileDirname }}).\n'
            + text)


def _sha256(path: str) -> str:
    return file_sha256(path)


def save_tensors(tensors: Dict[str, torch.Tensor], path: str,
                 metadata: Optional[Dict[str, str]] = None) -> None:
    """safetensors' ``save_file``, the file then readable as the user's
    umask says: safetensors creates its files mode 0600 whatever the
    umask, and a release is written for others to read."""
    save_file(tensors, path, metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _save_clip_head(model, path: str) -> None:
    head = model.mixup.clip_head
    tensors = (head.ln_post.weight, head.ln_post.bias, head.proj)
    save_tensors({k: t.detach().clone().contiguous()
                  for k, t in zip(HEAD_KEYS, tensors)}, path)


def publish_model(config: str, checkpoint: str, out_dir: str, *,
                  name: Optional[str] = None, with_clip: bool = False,
                  with_reranker: bool = True,
                  metrics: Optional[dict] = None) -> dict:
    """Write a released model folder from a training checkpoint.

    The model is built from ``config`` (which needs the training files),
    the checkpoint must fit it exactly, and the written folder is loaded
    back and compared tensor by tensor before the folder is moved into
    place: a release that does not reproduce the checkpoint is never left
    behind.

    Args:
        config (str): The training config.
        checkpoint (str): A checkpoint of that config (loaded safely).
        out_dir (str): The release folder to create (must not exist), or a
            ``.safetensors`` path for a one-file release.
        name (str, optional): The model's name. Defaults to the folder's.
        with_clip (bool): Also ship the CLIP named by ``clip_model``, so
            captioning raw images needs nothing else: a folder gets a copy
            of its open_clip checkpoint (and JSON config, if any), a
            one-file release its image tower's weights, open_clip config
            and preprocessing; and the re-ranker's CLIP, if the config has
            ``model.reranker`` (:func:`write_release`). Defaults to False.
        with_reranker (bool): Keep the config's ``model.reranker``; False
            releases the model without it (captions by plain beam search),
            which needs no ``with_clip``. Defaults to True.
        metrics (dict, optional): Scores to record in ``release.json``.

    Returns:
        dict: The manifest written to ``release.json``.
    """
    if osp.exists(out_dir):
        raise FileExistsError(f'{out_dir} exists; publish to a new path')
    cfg = Config.fromfile(config)
    if not with_reranker:
        cfg.model.pop('reranker', None)
    # The release's config carries the values: it travels without stores.
    fill_feature_layout(cfg)
    model = MODELS.build(cfg.model)
    check_checkpoint_matches(model, checkpoint)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    manifest = dict(
        name=name or osp.splitext(osp.basename(osp.normpath(out_dir)))[0],
        source=dict(config=config, checkpoint=checkpoint,
                    checkpoint_sha256=_sha256(checkpoint)),
        clip_model=dict(cfg.get('clip_model') or {}),
        metrics=metrics or {})
    return write_release(cfg, model, out_dir, manifest, with_clip=with_clip)


def write_release(cfg: Config, model, out: str, manifest: dict, *,
                  with_clip: bool = False) -> dict:
    """Write a built, loaded ``model`` of ``cfg`` as a release (a folder,
    or one file when ``out`` ends in ``.safetensors``), check that it
    reproduces the model, and return the manifest (with file hashes).

    The tokenizer is the model's own (its files: a word tokenizer's
    ``tokenizer.json``, a language model's tokenizer folder), the concept
    bank the file ``cfg.model`` names; a component's ``release_config()``
    changes its config so that it rebuilds from the release alone.

    A model with a CLIP re-ranker is released only ``with_clip``
    (:func:`_check_reranker_travels`): the release then carries the
    re-ranker's CLIP too and re-ranks as the model did.
    """
    if osp.exists(out):
        raise FileExistsError(f'{out} exists; publish to a new path')
    _check_reranker_travels(model, with_clip)
    _record_names_only(manifest)
    cfg = _rebuildable_config(cfg, model)
    card = _card(cfg, model, manifest, out, with_clip)
    out_dir = out
    if out_dir.endswith('.safetensors'):
        _publish_one_file(cfg, model, out_dir, manifest, card,
                          with_clip=with_clip)
        return manifest
    tokenizer = tokenizer_files(model.require_tokenizer())
    files = {key: None if path is None else target for (key, path), target
             in zip(_model_files(cfg).items(),
                    (TOKENIZER_DIR if HF_TOKENIZER_CONFIG in tokenizer
                     else 'tokenizer.json', 'concept_bank.npz',
                     'clip_head.safetensors'))}
    state = {k: v.detach().clone().contiguous()
             for k, v in model.state_dict().items()}
    with atomic_path(out_dir) as tmp:
        os.makedirs(tmp)
        save_tensors(state, osp.join(tmp, WEIGHTS))
        _write_tokenizer(tokenizer, osp.join(tmp, files['model.tokenizer']))
        if files['model.mixup.concept_bank']:
            shutil.copyfile(cfg.model.mixup.concept_bank,
                            osp.join(tmp, 'concept_bank.npz'))
            _save_clip_head(model, osp.join(tmp, 'clip_head.safetensors'))
        if with_clip:
            _copy_clip(cfg, tmp)
        with open(osp.join(tmp, CONFIG), 'w') as f:
            f.write(_release_config_text(cfg, files))
        with open(osp.join(tmp, CARD), 'w', encoding='utf-8') as f:
            f.write(card)
        _check_release_reproduces(tmp, state, model)
        manifest['files'] = {name: _sha256(osp.join(tmp, name))
                             for name in _files_under(tmp)}
        with open(osp.join(tmp, MANIFEST), 'w') as f:
            json.dump(manifest, f, indent=2)
    return manifest


def _check_reranker_travels(model, with_clip: bool) -> None:
    """Refuse to release a CLIP re-ranker without its CLIP.

    The re-ranker's text tower is not among the model's tensors; its
    config names open_clip files of the publishing machine, so a release
    keeping those paths would load only there (or silently depend on
    them). Refusing asks for one of the two releases a user can mean:
    re-ranking (``--with-clip`` carries the CLIP) or plain beam search
    (``--without-reranker``).

    Raises:
        ValueError: ``model`` has a re-ranker and ``with_clip`` is False.
    """
    if getattr(model, 'reranker', None) is not None and not with_clip:
        raise ValueError(
            'the model re-ranks its beams with CLIP (model.reranker), whose '
            'text tower a release carries only with --with-clip '
            '(with_clip=True); publish with --with-clip, or without the '
            're-ranker (--without-reranker, with_reranker=False: captions '
            'by plain beam search)')


def _rebuildable_config(cfg: Config, model) -> Config:
    """A copy of ``cfg`` with what each model component says it needs to
    be rebuilt from a release alone (its ``release_config()``, e.g. a
    pretrained GPT-2's architecture as data in place of its folder, whose
    weights are in the release's weights)."""
    cfg = Config(cfg.to_dict())
    for name, part in model.named_children():
        changes = getattr(part, 'release_config', None)
        if callable(changes) and isinstance(cfg.model.get(name), dict):
            for key, value in changes().items():
                cfg.model[name][key] = value  # replaced, not merged
    return cfg


def _write_tokenizer(files: Dict[str, bytes], path: str) -> None:
    """A tokenizer's files (``tokenizer_files``): a word tokenizer's
    ``tokenizer.json`` at ``path``, a language model's files in the folder
    ``path``."""
    if HF_TOKENIZER_CONFIG in files:
        os.makedirs(path)
        paths = {name: osp.join(path, name) for name in files}
    else:
        paths = {'tokenizer.json': path}
    for name, target in paths.items():
        with open(target, 'wb') as f:
            f.write(files[name])


def _files_under(folder: str) -> list:
    """Every file under ``folder``, as sorted '/'-separated relative
    paths."""
    return sorted(osp.relpath(osp.join(root, name), folder).replace(
        os.sep, '/') for root, _, names in os.walk(folder) for name in names)


def _record_names_only(manifest: dict) -> None:
    """Record the files a release came from by their names: the folders
    of the publishing machine mean nothing to its users."""
    def name(value):
        return osp.basename(osp.normpath(value)) if isinstance(value, str) \
            else value
    manifest['source'] = {key: name(value) for key, value
                          in (manifest.get('source') or {}).items()}
    clip = dict(manifest.get('clip_model') or {})
    manifest['clip_model'] = {
        key: name(value) if key in ('checkpoint', 'model_config') else value
        for key, value in clip.items()}


def _card(cfg: Config, model, manifest: dict, out: str,
          with_clip: bool) -> str:
    words = getattr(model.mixup, 'concept_words', None)
    return model_card(cfg, manifest, out=out,
                      vocab_size=model.decoder.vocab_size,
                      num_concepts=len(words) if words else None,
                      with_clip=with_clip)


def _publish_one_file(cfg: Config, model, out: str, manifest: dict,
                      card: str, *, with_clip: bool = False) -> None:
    """Weights + tokenizer + concept bank (+ the CLIP image tower and the
    re-ranker's text tower) as tensors, the config (files
    ``'from_weights'``), the manifest and the model card as metadata, in
    one file."""
    values = {key: None if path is None else FROM_WEIGHTS
              for key, path in _model_files(cfg).items()}
    values['model.decoder.vocab_size'] = model.decoder.vocab_size
    release_cfg = Config(cfg.to_dict())
    release_cfg.merge_from_dict(values)
    state = {k: v.detach().clone().contiguous()
             for k, v in model.state_dict().items()}
    files = model.files_state()  # tokenizer and concept bank as tensors
    metadata = {MANIFEST_KEY: json.dumps(manifest), MODEL_CARD_KEY: card}
    tower, text_tower = {}, {}
    if with_clip:
        tower, metadata[CLIP_KEY] = _clip_tower(cfg)
        release_cfg.clip_model = dict(
            name=cfg.clip_model['name'], checkpoint=FROM_WEIGHTS,
            pool=cfg.clip_model.get('pool', 'auto'))
    if model.reranker is not None:  # with_clip (_check_reranker_travels)
        text_tower = {TEXT_TOWER_PREFIX + k: v for k, v
                      in model.reranker.text_tower_state().items()}
        # The architecture as data; the tower comes with the weights.
        release_cfg.model.reranker.update(
            clip_checkpoint=FROM_WEIGHTS, pretrained=None,
            model_config=model.reranker.clip_config)
    metadata[CONFIG_KEY] = config_to_json(release_cfg)
    with atomic_path(out, suffix='.safetensors') as tmp:
        save_tensors({**state, **files, **tower, **text_tower}, tmp,
                     metadata=metadata)
        _check_release_reproduces(tmp, state, model)
        if tower:
            _check_tower_reproduces(tmp, tower)


def _clip_of(cfg: Config) -> dict:
    """The config's ``clip_model``, which ``--with-clip`` needs."""
    clip = dict(cfg.get('clip_model') or {})
    if not clip.get('name'):
        raise ValueError('--with-clip: the config names no CLIP; set '
                         "clip_model = dict(name=..., checkpoint=...)")
    return clip


def _copy_clip(cfg: Config, folder: str) -> None:
    """Copy the open_clip files of ``clip_model`` and of the re-ranker,
    and point both configs at the copies.

    A file the re-ranker shares with ``clip_model`` (the same bytes: the
    CLIP that extracted the features, as it should be) is copied once. A
    custom model's JSON keeps its file name: open_clip knows a model
    config by its file stem, which is the name it answers to.
    """
    copies = {}  # sha256 -> the copy's name
    cfg.clip_model = _copy_clip_files(
        _clip_of(cfg), 'clip_model', dict(checkpoint='clip_checkpoint'),
        folder, copies)
    if cfg.model.get('reranker'):
        cfg.model.reranker = _copy_clip_files(
            cfg.model.reranker, 'model.reranker',
            dict(clip_checkpoint='reranker_clip_checkpoint'), folder, copies)


def _copy_clip_files(clip: dict, where: str, checkpoints: Dict[str, str],
                     folder: str, copies: Dict[str, str]) -> dict:
    """``clip`` with its open_clip files (the ``checkpoints`` keys, copied
    as ``checkpoints[key]`` + the file's extension, and ``model_config``,
    copied under its own name) copied into ``folder``; a file whose bytes
    were copied already (``copies``) is pointed at that copy."""
    clip = dict(clip)
    for key in (*checkpoints, 'model_config'):
        path = clip.get(key)
        if not path:
            continue
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'--with-clip: {where}.{key} {path} not found')
        digest = _sha256(path)
        target = copies.get(digest) or (
            checkpoints[key] + osp.splitext(path)[1] if key in checkpoints
            else osp.basename(path))
        if digest not in copies:
            if osp.exists(osp.join(folder, target)):
                raise ValueError(
                    f'--with-clip: {where}.{key} {path} has the name of a '
                    'release file; rename it (and the model name with it)')
            shutil.copyfile(path, osp.join(folder, target))
            copies[digest] = target
        clip[key] = f'{MARKER}/{target}'
    return clip


def _clip_tower(cfg: Config) -> Tuple[Dict[str, torch.Tensor], str]:
    """The config's CLIP image tower for a one-file release: its tensors
    (under :data:`CLIP_TOWER_PREFIX`) and the metadata that rebuilds it
    (open_clip name, model config, preprocessing) as JSON."""
    import open_clip  # deferred: open_clip loads only where CLIP runs
    clip = _clip_of(cfg)
    checkpoint = clip.get('checkpoint')
    model, _, _ = load_open_clip(
        clip['name'], checkpoint=checkpoint,
        pretrained=None if checkpoint else clip.get('pretrained'),
        model_config=clip.get('model_config'))
    tensors = {CLIP_TOWER_PREFIX + k: v.detach().clone().contiguous()
               for k, v in model.visual.state_dict().items()}
    meta = dict(name=clip['name'],
                model_config=open_clip.get_model_config(clip['name']),
                preprocess=open_clip.get_model_preprocess_cfg(model))
    return tensors, json.dumps(meta)


def _check_tower_reproduces(path: str, tower: Dict[str, torch.Tensor]
                            ) -> None:
    """The release's CLIP, rebuilt from it alone, has the tower's tensors."""
    model = load_release_clip(path)
    again = model.visual.state_dict()
    differ = [k for k, v in tower.items()
              if not torch.equal(again[k[len(CLIP_TOWER_PREFIX):]], v)]
    if differ:
        raise RuntimeError(f'the release {path} does not reproduce the CLIP '
                           f'image tower ({differ[:3]}); nothing written')


def _check_release_reproduces(path: str, state: dict, model) -> None:
    """Build the model from the release alone and compare every tensor,
    the tokenizer (vocabulary, special tokens, its whole definition), the
    concept bank's words and the re-ranker's CLIP text tower (carried,
    or read from the copied open_clip files) with ``model``'s."""
    config, weights = resolve_release(path)
    again = MODELS.build((config if isinstance(config, Config)
                          else Config.fromfile(config)).model)
    load_checkpoint(again, weights, map_location='cpu', logger='silent',
                    strict=True)
    if _vocabulary(again) != _vocabulary(model):
        raise RuntimeError(f'the release {path} does not reproduce the '
                           'vocabulary or concept bank; nothing written')
    tensors = again.state_dict()
    differ = [k for k in state if k not in tensors
              or not torch.equal(tensors[k], state[k])]
    if differ or set(tensors) != set(state):
        raise RuntimeError(f'the release {path} does not reproduce the '
                           f'checkpoint ({differ[:3]}); nothing written')
    _check_reranker_reproduces(path, again, model)


def _check_reranker_reproduces(path: str, again, model) -> None:
    """The rebuilt model re-ranks with ``model``'s CLIP text tower."""
    if getattr(model, 'reranker', None) is None:
        return
    expected = model.reranker.text_tower_state()
    reranker = getattr(again, 'reranker', None)
    if reranker is None or not reranker.tower_loaded:
        differ = ['no text tower']
    else:
        tower = reranker.text_tower_state()
        differ = sorted(set(tower) ^ set(expected)) + [
            k for k in expected
            if k in tower and not torch.equal(tower[k], expected[k])]
    if differ:
        raise RuntimeError(f'the release {path} does not reproduce the '
                           f"re-ranker's CLIP text tower ({differ[:3]}); "
                           'nothing written')


def _vocabulary(model) -> tuple:
    """What a release must give back of a model besides its tensors: its
    tokenizer's kind, vocabulary, special tokens and definition (the
    backend's JSON: normaliser, merges, ...), and its concept words."""
    tokenizer = model.require_tokenizer()
    backend = getattr(tokenizer, 'backend_tokenizer', None)
    return (type(tokenizer).__name__, tokenizer.get_vocab(),
            tokenizer.special_tokens_map, tokenizer.all_special_ids,
            None if backend is None else backend.to_str(),
            getattr(model.mixup, 'concept_words', None))
