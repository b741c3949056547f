"""The README's runnable blocks, run as written.

A block marked ``<!-- readme-test: NAME -->`` in README.md runs here in a
fresh process, text unchanged: bash blocks with ``bash -euo pipefail``
from the clone, Python blocks with the project's interpreter. They follow
``make demo`` (the README's first command), so they need its run in
``work_dirs/demo``; CI runs ``make demo`` before ``make test``, and
elsewhere the tier skips until the demo has run. A README command that no
test runs is a README command that will break.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

pytestmark = [pytest.mark.readme, pytest.mark.slow]

MARKED = re.compile(r'<!-- readme-test: (?P<name>[\w-]+) -->\n'
                    r'```(?P<lang>\w+)\n(?P<code>.*?)```', re.S)
DEMO = osp.join(REPO_ROOT, 'work_dirs', 'demo')
IMAGE = 'data/mini_world/images/real/test/200000.png'


def readme_blocks() -> dict:
    """``name -> (language, code)`` of the README's marked blocks."""
    with open(osp.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    return {m['name']: (m['lang'], m['code'])
            for m in MARKED.finditer(text)}


def test_the_marked_blocks_are_the_ones_this_tier_runs():
    """A renamed or unmarked block would silently stop being tested."""
    assert {name: lang for name, (lang, _) in readme_blocks().items()} == {
        'after-demo': 'bash', 'python-api': 'python', 'own-config': 'bash'}


@pytest.fixture(scope='module')
def demo_run():
    if not osp.isfile(osp.join(DEMO, 'epoch_6.pth')):
        if os.environ.get('CI'):
            pytest.fail('CI must run `make demo` before `make test` (the '
                        'README tier follows the demo)')
        pytest.skip('run `make demo` first: the README blocks follow it')
    return DEMO


def _run(lang: str, code: str, cwd: str = REPO_ROOT):
    cmd = ['bash', '-euo', 'pipefail', '-c', code] if lang == 'bash' else \
        [sys.executable, '-c', code]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, (
        f'README block failed (exit {proc.returncode}):\n{code}\n--- '
        f'stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n'
        f'{proc.stderr[-5000:]}')
    return proc


@pytest.fixture(scope='module')
def after_demo(demo_run):
    """The 'after the demo' journey, from a state without its outputs."""
    for path in ('releases/pcm-demo', 'releases/pcm-demo.safetensors'):
        path = osp.join(REPO_ROOT, path)
        if osp.isdir(path):
            shutil.rmtree(path)
        elif osp.exists(path):
            os.remove(path)
    return _run(*readme_blocks()['after-demo'])


def test_after_the_demo_journey(after_demo):
    work = osp.join(REPO_ROOT, 'work_dirs')
    with open(osp.join(work, 'captions.tsv')) as f:
        image, caption = f.read().rstrip('\n').split('\t')
    assert image == IMAGE and len(caption.split()) >= 3
    with open(osp.join(work, 'demo_release_metrics.json')) as f:
        assert json.load(f)['CIDEr'] > 0
    with open(osp.join(work, 'captions.json')) as f:
        (entry,) = json.load(f).values()
    assert entry['caption'] and entry['concepts']
    assert osp.isfile(osp.join(work, 'mixup_figures', '200000_mixup.png'))
    assert osp.isfile(osp.join(work, 'demo_curves.png'))


def test_python_api(after_demo):
    proc = _run(*readme_blocks()['python-api'])
    captions, models = [line for line in proc.stdout.splitlines()
                        if line.startswith('[')]
    assert len(captions.strip("[]'").split()) >= 3
    assert 'pcm-net_vit-b32_coco' in models


def test_own_config_outside_the_clone(demo_run):
    proc = _run(*readme_blocks()['own-config'])
    assert 'Epoch(test)' in proc.stdout + proc.stderr
