"""A user's config file and ``--cfg-options``: errors that name the file,
the line or the key, and the fix.

``Config.fromfile`` runs the config (Python) or parses it (YAML, JSON), and
lets whatever fails there escape as is: a ``NameError`` from line 3, a
``SyntaxError`` naming ``<unknown>``, or an empty ``RuntimeError`` from
mmengine's lazy-import mode. ``--cfg-options`` values are parsed by their
look (``abc`` a string, ``5`` an int), so ``optim_wrapper.optimizer.lr=abc``
reaches torch's optimizer as a string and fails in a comparison deep in
the build. Both are checked here, before any work.
"""
import difflib
import os.path as osp
import sys
import traceback
import warnings
from typing import Any, Dict, Optional

import mmengine
from mmengine.config import Config


def read_config(path: str) -> Config:
    """``Config.fromfile(path)``, with a failure named in one line.

    Args:
        path (str): The config file.

    Returns:
        Config: The loaded config.

    Raises:
        ValueError: The file could not be loaded; the message names it,
            the line of the config (or of a ``_base_`` file) that failed
            where known, and the loader's reason.
    """
    try:
        return Config.fromfile(path)
    except Exception as err:  # a config is code: anything can fail in it
        raise ValueError(f'config {path} could not be loaded ('
                         f'{_load_failure(err, path)})') from err


def _load_failure(err: Exception, path: str) -> str:
    """``<file>:<line>: <Type>: <reason>`` for an error raised while loading
    ``path``; the file is the last config (or base) frame of the stack."""
    where = _config_frame(err)
    if isinstance(err, SyntaxError) and err.lineno:
        where = (path if err.filename in (None, '<unknown>')
                 else err.filename, err.lineno)
    reason = ' '.join((err.msg if isinstance(err, SyntaxError) else
                       str(err)).split())
    if not reason and _raised_in_lazy_import(err):
        reason = ('a config with `import` lines is read in mmengine\'s lazy '
                  'mode, where calling an imported function fails: write '
                  'the value itself, or drop the import')
    place = f'{where[0]}:{where[1]}: ' if where else ''
    return f'{place}{type(err).__name__}: {reason or "no reason given"}'


def _config_frame(err: Exception) -> Optional[tuple]:
    """(file, line) of the innermost frame outside mmengine, this package
    and the Python installation: the config line that raised."""
    skip = tuple(osp.dirname(osp.abspath(m)) for m in (
        mmengine.__file__, osp.dirname(__file__)))
    skip += tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not osp.abspath(f.filename).startswith(skip)
              and osp.isfile(f.filename)]
    return (frames[-1].filename, frames[-1].lineno) if frames else None


def _raised_in_lazy_import(err: Exception) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(
        osp.join('mmengine', 'config', 'lazy.py'))


def check_override_types(cfg: Config, options: Dict[str, Any]) -> None:
    """Refuse a ``--cfg-options`` value of another kind than the value it
    replaces (a word for a number, a number for a section, ...).

    Only keys the config already holds are checked (a new key has nothing
    to compare with); ``None`` replaces anything, and ints and floats
    replace each other. A new key whose name is close to one the config
    holds at that place (``beam_sise`` beside ``beam_size``) is warned
    about, naming the close key: mmengine adds it silently, and an option
    a module never reads leaves the run as it was.

    Args:
        cfg (Config): The loaded config, before the overrides.
        options (dict): ``key -> value`` as mmengine's ``DictAction``
            parsed them.

    Raises:
        ValueError: naming the key, the value given and what the config
            holds there.
    """
    for key, value in options.items():
        found, old = _lookup(cfg, key)
        if not found:
            _warn_if_misspelt(cfg, key)
        elif not _fits(old, value):
            raise ValueError(f'--cfg-options {key}={_shown(value)}: the '
                             f'config holds {_expected(key, old)}')


def _warn_if_misspelt(cfg: Config, key: str) -> None:
    """Warn when the first part of ``key`` the config lacks is close to a
    key it holds at that place (a new key is legitimate, e.g.
    ``model.reranker``; a near miss is more likely a typo)."""
    node: Any = cfg.to_dict()
    parts = key.split('.')
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            return  # under a list or a value: no names to compare with
        if part not in node:
            close = difflib.get_close_matches(
                part, [k for k in node if isinstance(k, str)], n=1,
                cutoff=0.8)
            if close:
                place = '.'.join(parts[:depth] + close)
                warnings.warn(
                    f'--cfg-options {key}: the config has no '
                    f'{".".join(parts[:depth + 1])}, but has {place}: a '
                    'misspelt key is added as a new key and changes '
                    f'nothing; did you mean {place}?', UserWarning,
                    stacklevel=3)
            return
        node = node[part]


def _lookup(cfg: Config, key: str):
    """(True, value) at a dotted ``key`` (list items by index), else
    (False, None)."""
    node: Any = cfg.to_dict()
    for part in key.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _fits(old: Any, new: Any) -> bool:
    """Whether ``new`` can stand where the config holds ``old``."""
    if old is None or new is None:
        return True
    if isinstance(old, bool):
        return isinstance(new, (bool, int))
    if isinstance(old, (int, float)):
        return isinstance(new, (int, float)) and not isinstance(new, bool)
    if isinstance(old, (list, tuple)):
        return isinstance(new, (list, tuple))
    if isinstance(old, dict):
        return isinstance(new, dict)
    if isinstance(old, str):  # a name may be all digits
        return isinstance(new, (str, int, float))
    return True


def _expected(key: str, old: Any) -> str:
    """What the config holds at ``key`` and what to give instead."""
    if isinstance(old, bool):
        return f'true or false there ({old}); give true or false'
    if isinstance(old, (int, float)):
        return f'a number there ({old}); give a number'
    if isinstance(old, (list, tuple)):
        return f'a list there ({_shown(old)}); give a list, e.g. {key}=[a,b]'
    if isinstance(old, dict):
        first = next(iter(old), 'name')
        return (f'a section there; set its keys one by one, e.g. '
                f'{key}.{first}=...')
    return f'a word or path there ({_shown(old)}); give one'


def _shown(value: Any) -> str:
    """A value as a user writes it, shortened."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + '...'


TRAIN_SECTIONS = ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper')
TEST_SECTIONS = ('model', 'test_dataloader', 'test_cfg', 'test_evaluator')


def require_sections(cfg: Config, sections, tool: str) -> None:
    """Refuse a config without a section ``tool`` needs (an empty or
    half-written config would fail deep in mmengine on an attribute).

    Args:
        cfg (Config): The loaded config.
        sections (Sequence[str]): The top-level keys needed.
        tool (str): The tool, for the message (e.g. ``'tools/train.py'``).

    Raises:
        KeyError: naming the config file, the missing keys and the fix.
    """
    missing = [key for key in sections if cfg.get(key) is None]
    if missing:
        raise KeyError(
            f'config {cfg.filename or "(built in code)"} has no '
            f'{", ".join(missing)}: {tool} needs {", ".join(sections)} '
            "(inherit them with _base_, as configs/pcm_coco.py does)")
