"""The tools hide the stack's known-harmless warnings, and only those.

A fresh interpreter: the filters under test are the ones a tool's start-up
installs in its own process and passes to its children. It imports only
the standard library, so it stays in the fast tier.
"""
import os
import subprocess
import sys

from tests.helpers import REPO_ROOT

SCRIPT = '''
import subprocess, sys, warnings
sys.path.insert(0, {root!r})
import tools._cli
warnings.warn('pkg_resources is deprecated as an API. See x', UserWarning)
warnings.warn('`broadcast_buffers` is deprecated since y', FutureWarning)
warnings.warn('a real problem with your data', UserWarning)
subprocess.run([sys.executable, '-c', "import warnings; warnings.warn("
                "'Fail to import ``MultiScaleDeformableAttention`` from z'); "
                "warnings.warn('child: a real problem')"])
'''


def test_known_warnings_hidden_in_the_tool_and_its_children(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
    out = subprocess.run(
        [sys.executable, '-c', SCRIPT.format(root=REPO_ROOT)], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if 'Warning' in line]
    assert len(lines) == 2, out.stderr
    assert 'a real problem with your data' in lines[0]
    assert 'child: a real problem' in lines[1]
