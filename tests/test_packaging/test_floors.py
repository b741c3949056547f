"""The floor plan of docs/architecture.md as ``make lint`` checks it
(import-linter, contracts in ``.importlinter``): the tracked sources keep
it; an import that runs back up a floor or into the lab breaks it, inside
a function body too, and so does a package given no floor."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

LINT_IMPORTS = osp.join(osp.dirname(sys.executable), 'lint-imports')


@pytest.fixture
def sources(tmp_path) -> str:
    """A folder with the tracked ``.py`` files of ``pcm_plugin/`` and
    ``projects/`` and ``.importlinter`` (as a clone has them: untracked
    files stay out)."""
    listing = subprocess.run(
        ['git', 'ls-files', '-z', '--', 'pcm_plugin/*.py', 'projects/*.py',
         '.importlinter'], cwd=REPO_ROOT, capture_output=True, text=True,
        check=True).stdout
    for rel in filter(None, listing.split('\0')):
        if osp.isfile(osp.join(REPO_ROOT, rel)):  # not deleted since
            os.makedirs(osp.dirname(str(tmp_path / rel)), exist_ok=True)
            shutil.copy(osp.join(REPO_ROOT, rel), str(tmp_path / rel))
    return str(tmp_path)


def lint_imports(folder: str) -> subprocess.CompletedProcess:
    """``lint-imports`` as ``make lint`` runs it, on ``folder``'s code."""
    return subprocess.run([LINT_IMPORTS, '--no-cache', '--no-logo'],
                          cwd=folder, capture_output=True, text=True,
                          timeout=300)


def append(folder: str, rel: str, code: str) -> None:
    with open(osp.join(folder, rel), 'a', encoding='utf-8') as f:
        f.write(code)


def test_the_tracked_sources_keep_every_contract(sources):
    proc = lint_imports(sources)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Contracts: 3 kept, 0 broken.' in proc.stdout


def test_a_back_arrow_inside_a_function_breaks_the_floors(sources):
    append(sources, 'pcm_plugin/models/layers.py',
           '\n\ndef _probe():\n    from pcm_plugin.apis import release\n')
    proc = lint_imports(sources)
    assert proc.returncode == 1
    assert ('pcm_plugin.models is not allowed to import pcm_plugin.apis'
            in proc.stdout)
    assert 'pcm_plugin.models.layers -> pcm_plugin.apis.release' \
        in proc.stdout


def test_the_library_importing_the_lab_breaks_a_contract(sources):
    append(sources, 'pcm_plugin/utils/fileio.py',
           '\n\ndef _probe():\n'
           '    from projects.mini_world.pcm_mini_world import scenes\n')
    proc = lint_imports(sources)
    assert proc.returncode == 1
    assert 'The library does not import the lab (projects/) BROKEN' \
        in proc.stdout
    assert 'pcm_plugin.utils.fileio -> ' \
        'projects.mini_world.pcm_mini_world.scenes' in proc.stdout


def test_a_package_without_a_floor_breaks_the_floors(sources):
    os.makedirs(osp.join(sources, 'pcm_plugin', 'extras'))
    append(sources, 'pcm_plugin/extras/__init__.py', '')
    proc = lint_imports(sources)
    assert proc.returncode == 1
    assert 'not listed as layers:\n\n- pcm_plugin.extras' in proc.stdout
