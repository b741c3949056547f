"""Start-up: which heavy libraries a fresh process imports before a tool
answers, or on ``import pcm_plugin``.

A tool parses its arguments before it imports torch, mmengine or the
package, so that ``--help`` and argument errors answer at once; these
helpers run a fresh interpreter and report what it loaded, which is exact
where a timing is not.
"""
import glob
import json
import os.path as osp
import subprocess
import sys
from typing import List, Sequence, Tuple

# Each costs a noticeable start-up time, torch and mmpretrain the most: a
# tool imports them after parse_args, and `import pcm_plugin` adds none
# that mmpretrain does not import itself.
HEAVY_MODULES = ('torch', 'mmengine', 'mmpretrain', 'open_clip', 'diffusers',
                 'transformers', 'matplotlib')

# `python TOOL ARGS` in-process (same sys.path[0], run as __main__), then
# one JSON line: its exit status and which of the given modules it loaded.
_PROBE = '''
import json, os.path, runpy, sys
tool, names = sys.argv[1], json.loads(sys.argv[2])
sys.argv = [tool] + sys.argv[3:]
sys.path[0] = os.path.dirname(os.path.abspath(tool))
try:
    runpy.run_path(tool, run_name='__main__')
    status = 0
except SystemExit as exc:
    status = exc.code if isinstance(exc.code, int) else int(
        exc.code is not None)
sys.stdout.flush()
print(json.dumps(dict(status=status,
                      loaded=[m for m in names if m in sys.modules])),
      file=sys.__stdout__)
'''


def tool_scripts(repo: str) -> List[str]:
    """Every Python tool under ``tools/`` and the lab's
    ``projects/*/tools/`` (``tools/_*`` are helpers).

    Args:
        repo (str): The checkout.

    Returns:
        list[str]: Paths relative to ``repo``, sorted.
    """
    found = [path for folder in ('tools', osp.join('projects', '*', 'tools'))
             for path in glob.glob(osp.join(repo, folder, '**', '*.py'),
                                   recursive=True)]
    return sorted(osp.relpath(p, repo) for p in found
                  if not osp.basename(p).startswith('_'))


def modules_loaded_by(repo: str, tool: str, args: Sequence[str],
                      names: Sequence[str] = HEAVY_MODULES
                      ) -> Tuple[int, List[str]]:
    """Run ``python TOOL ARGS`` in a fresh process; which of ``names`` did
    it import?

    Args:
        repo (str): The checkout (working directory).
        tool (str): Path relative to ``repo``.
        args (Sequence[str]): Its arguments, e.g. ``['--help']``.
        names (Sequence[str]): Modules to look for.

    Returns:
        tuple: The tool's exit status and the modules of ``names`` loaded.
    """
    out = _python(['-c', _PROBE, tool, json.dumps(list(names)), *args],
                  repo)
    result = json.loads(out.splitlines()[-1])
    return result['status'], result['loaded']


def modules_imported_by(module: str, repo: str,
                        names: Sequence[str] = HEAVY_MODULES) -> List[str]:
    """Which of ``names`` does ``import MODULE`` import in a fresh process?

    Args:
        module (str): e.g. ``'pcm_plugin'``.
        repo (str): The checkout (working directory: its package first).
        names (Sequence[str]): Modules to look for.

    Returns:
        list[str]: Those loaded, in the order of ``names``.
    """
    code = (f'import json, sys, {module}\n'
            f'print(json.dumps([m for m in {list(names)!r} '
            'if m in sys.modules]))')
    return json.loads(_python(['-c', code], repo).splitlines()[-1])


def _python(args: List[str], repo: str) -> str:
    """Stdout of ``python ARGS`` run in ``repo``; its stderr on failure."""
    out = subprocess.run([sys.executable, *args], cwd=repo,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'python {args[:2]} failed:\n{out.stderr[-3000:]}')
    return out.stdout
