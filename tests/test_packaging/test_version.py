"""One version string: pcm_plugin/version.py, read by setup.py and the
package alike."""
import os.path as osp
import re

from tests.helpers import REPO_ROOT


def test_version_is_written_once_in_version_py():
    import pcm_plugin
    from pcm_plugin import version
    assert pcm_plugin.__version__ == version.__version__
    assert re.fullmatch(r'\d+\.\d+\.\d+', pcm_plugin.__version__)
    literal = f"'{pcm_plugin.__version__}'"
    with open(osp.join(REPO_ROOT, 'setup.py'), encoding='utf-8') as f:
        setup_py = f.read()
    with open(osp.join(REPO_ROOT, 'pcm_plugin', '__init__.py'),
              encoding='utf-8') as f:
        init_py = f.read()
    assert literal not in setup_py and literal not in init_py
    assert 'read_version()' in setup_py



def test_changelog_opens_with_this_version():
    import pcm_plugin
    with open(osp.join(REPO_ROOT, 'CHANGELOG.md'), encoding='utf-8') as f:
        headings = [line for line in f if line.startswith('## ')]
    assert headings[0].startswith(f'## {pcm_plugin.__version__} (')
