"""Start-up: every tool parses its arguments before it imports a heavy
library, and ``import pcm_plugin`` imports none that
mmpretrain does not import itself.

No timing is asserted (the project times nothing in tests): what makes
``--help`` take seconds is an import, and which modules a fresh process
loaded is exact. ``projects/benchmarks/tools/benchmark.py`` reports the
seconds.
"""
import argparse
import ast
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest

from pcm_plugin.testing.startup import (
    modules_imported_by,
    modules_loaded_by,
    tool_scripts,
)
from tests.helpers import REPO_ROOT
from tools import train as train_tool


@pytest.mark.parametrize('tool', tool_scripts(REPO_ROOT))
@pytest.mark.parametrize('args,status', [(['--help'], 0),
                                         (['--no-such-option'], 2)],
                         ids=['help', 'argument-error'])
def test_tool_answers_before_heavy_imports(tool, args, status):
    got, loaded = modules_loaded_by(REPO_ROOT, tool, args)
    assert got == status
    assert loaded == [], f'{tool} {args[0]} imported {loaded}'


@pytest.mark.slow  # a fresh interpreter importing the whole stack
def test_import_pcm_plugin_adds_no_heavy_library():
    ours = modules_imported_by('pcm_plugin', REPO_ROOT)
    # mmengine.optim imports transformers (to register its optimizers), so
    # joining mmpretrain's registry brings it; open_clip, diffusers and
    # matplotlib load only inside the functions that use them.
    assert set(ours) <= set(modules_imported_by('mmpretrain', REPO_ROOT))
    assert not {'open_clip', 'diffusers', 'matplotlib'} & set(ours)


# What a fresh process reports of the state an import could change: the
# environment, warning filters, logging, torch threads, import hooks.
_PROCESS_STATE = """
import json, logging, os, sys, warnings
import torch
print(json.dumps(dict(
    environ=sorted(os.environ.items()),
    warnings=[repr(f) for f in warnings.filters],
    logging=[logging.root.level, [type(h).__name__
                                  for h in logging.root.handlers]],
    threads=torch.get_num_threads(),
    meta_path=[type(f).__name__ for f in sys.meta_path])))
"""


def _third_party_imports_of_the_package() -> list:
    """Every module outside pcm_plugin that its files import at module
    level (``import a.b`` and ``from a.b import c`` give ``a.b``)."""
    found = set()
    for path in glob.glob(osp.join(REPO_ROOT, 'pcm_plugin', '**', '*.py'),
                          recursive=True):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module)
    return sorted(m for m in found if m.split('.')[0] != 'pcm_plugin')


def _state_after(imports: str) -> dict:
    out = subprocess.run([sys.executable, '-c', imports + _PROCESS_STATE],
                         cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter importing the whole stack
def test_import_pcm_plugin_only_registers():
    """``import pcm_plugin`` changes nothing of the process that importing
    the same third-party modules would not: registering is its only
    effect (the warning filters and offline defaults belong to the tools,
    ``tools/_cli.py``)."""
    modules = _third_party_imports_of_the_package()
    baseline = _state_after('import importlib\n'
                            f'for m in {modules!r}:\n'
                            '    importlib.import_module(m)\n')
    ours = _state_after('import pcm_plugin\n')
    assert ours == baseline


def test_cfg_options_parse_as_with_mmengine_dict_action():
    from mmengine.config import DictAction
    argv = ['--cfg-options', 'a.b=1', 'c=[1,2]', 'd=x,y', "e=(1,'s')",
            '--cfg-options', 'f=True']
    plain = argparse.ArgumentParser()
    plain.add_argument('--cfg-options', nargs='+', action=DictAction)
    assert train_tool.parse_args(['c.py', *argv]).cfg_options == \
        plain.parse_args(argv).cfg_options
