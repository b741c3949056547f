"""What the tools need from ``pcm_plugin`` before their arguments are parsed.

``--help`` and argument errors should answer at once, but importing any
``pcm_plugin.<module>`` first runs ``pcm_plugin/__init__``, which joins
mmpretrain's registries (torch, mmengine and mmpretrain: seconds). A parser
needs only a few literal constants (choices, defaults) or a module that
imports nothing but the standard library (the train/test parsers), so this
module serves them from the package's files without importing the package;
the tools import ``pcm_plugin`` after ``parse_args``. Standard library only.
(Not a tool: ``tools/_*`` are helpers.)
"""
import argparse
import ast
import importlib.util
import os.path as osp
from types import ModuleType
from typing import Any, Dict, Optional


def package_file(module: str, package: str = 'pcm_plugin') -> str:
    """The source file of ``<package>.<module>``, found without importing.

    Args:
        module (str): Dotted name inside the package, e.g.
            ``'data_prep.annotations'``.
        package (str): The package: ``pcm_plugin``, or a lab project's
            (``'projects.mini_world.pcm_mini_world'``).

    Returns:
        str: Path of the ``.py`` file (the package that ``import
        pcm_plugin`` would load: the tools put the checkout first on
        ``sys.path``).
    """
    # find_spec imports parents of a dotted name, but not a top-level one.
    root = importlib.util.find_spec(package).submodule_search_locations
    return osp.join(root[0], *module.split('.')) + '.py'


def package_literals(module: str, package: str = 'pcm_plugin'
                     ) -> Dict[str, Any]:
    """The literal constants of ``<package>.<module>``, read from its
    source (the module is not run, so its imports cost nothing).

    Args:
        module (str): Dotted name inside the package.
        package (str): The package (see :func:`package_file`).

    Returns:
        dict: ``NAME -> value`` for each module-level ``NAME = <literal>``
        (or annotated ``NAME: T = <literal>``), and ``Class.NAME -> value``
        for such lines in a class body (dataclass defaults). Assignments
        whose value is not a literal are left out.
    """
    with open(package_file(module, package), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    found: Dict[str, Any] = {}
    scopes = [('', tree.body)] + [(f'{node.name}.', node.body)
                                  for node in tree.body
                                  if isinstance(node, ast.ClassDef)]
    for prefix, body in scopes:
        for node in body:
            target = _single_name_target(node)
            if target is None:
                continue
            try:
                found[prefix + target] = ast.literal_eval(node.value)
            except ValueError:  # not a literal: a call, a name, ...
                continue
    return found


def _single_name_target(node: ast.stmt) -> Optional[str]:
    """``NAME`` of ``NAME = value`` / ``NAME: T = value``, else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def light_module(module: str) -> ModuleType:
    """Run ``pcm_plugin.<module>`` from its file, without the package.

    Only for modules that import nothing but the standard library (their
    docstring says so); the package imports them as usual.

    Args:
        module (str): Dotted name inside the package, e.g.
            ``'cli.launch_args'``.

    Returns:
        ModuleType: A private copy, named ``_pcm_light.<module>`` and not
        put in ``sys.modules``.
    """
    spec = importlib.util.spec_from_file_location(
        f'_pcm_light.{module}', package_file(module))
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def positive_int(text: str) -> int:
    """``type=`` of a count that must be at least 1 (a batch size, a shard
    size): 0 or less is an argument error at once, not a division by zero
    or an endless loop later.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number >= 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a whole number') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} is not a positive '
                                         'number (give 1 or more)')
    return value


def add_clip_args(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The open_clip model options shared by the tools that run CLIP:
    ``--clip-model``, its weights (``--clip-checkpoint`` or
    ``--pretrained``), ``--model-config`` and ``--cache-dir``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        model_help (str): Help of ``--clip-model`` (its default differs).
    """
    parser.add_argument('--clip-model', help=model_help)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--clip-checkpoint',
                         help='local open_clip weights file')
    weights.add_argument('--pretrained',
                         help='open_clip pretrained tag whose weights are '
                         'already in the local cache (no download)')
    parser.add_argument('--model-config',
                        help='custom open_clip config JSON (<name>.json '
                        'registers model <name>)')
    parser.add_argument('--cache-dir', help='cache for --pretrained')


# Warnings the pinned stack prints on every run that say nothing about the
# user's run: (message prefix, category). Prefixes hold no ':' or ','
# (PYTHONWARNINGS syntax).
KNOWN_HARMLESS_WARNINGS = (
    ('pkg_resources is deprecated as an API', UserWarning),
    ('Deprecated call to `pkg_resources.declare_namespace', Warning),
    ('Fail to import ``MultiScaleDeformableAttention``', UserWarning),
    ('`broadcast_buffers` is deprecated', FutureWarning),
    ('The prefix is not set in metric class', UserWarning),
    ('`torch.jit.script` is deprecated', DeprecationWarning),
    ('`torch.jit.interface` is deprecated', DeprecationWarning),
)


def quiet_known_warnings() -> None:
    """Hide :data:`KNOWN_HARMLESS_WARNINGS` in this tool's process and the
    processes it starts (torchrun ranks, data workers: through
    ``PYTHONWARNINGS``); every other warning still prints.

    Entry points only: importing the library changes no filter.
    """
    import os
    import re
    import warnings
    for prefix, category in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings('ignore', message=re.escape(prefix),
                                category=category)
    inherited = [os.environ.get('PYTHONWARNINGS', '')] + [
        f'ignore:{prefix}:{category.__name__}'
        for prefix, category in KNOWN_HARMLESS_WARNINGS]
    os.environ['PYTHONWARNINGS'] = ','.join(filter(None, inherited))


quiet_known_warnings()
