"""What the benchmark tools add to their reports: the command that made
one, and the JSON written atomically (a kill leaves no half file)."""
import os.path as osp
import sys
from typing import Callable, Dict, Optional, Sequence


def tool_command(tool_file: str, argv: Optional[Sequence[str]] = None,
                 repo: Optional[str] = None) -> str:
    """The command line of a tool run, relative to the checkout.

    Args:
        tool_file (str): The tool's ``__file__``.
        argv (Sequence[str], optional): Its arguments (default: this
            process's ``sys.argv[1:]``; tests pass theirs).
        repo (str, optional): The checkout (default: three folders above
            the tool, which lives in ``projects/benchmarks/tools``).

    Returns:
        str: e.g. ``'.venv/bin/python projects/benchmarks/tools/x.py
        --smoke'``.
    """
    repo = repo or osp.abspath(osp.join(osp.dirname(tool_file), '../../..'))
    args = sys.argv[1:] if argv is None else list(argv)
    return ' '.join([osp.relpath(sys.executable, repo),
                     osp.relpath(osp.abspath(tool_file), repo), *args])


def write_report(path: Optional[str], report: Dict) -> None:
    """Write ``report`` as indented JSON to ``path``, if given."""
    if path:
        from pcm_plugin.utils.fileio import atomic_write_json
        atomic_write_json(path, report, indent=2)


def finish_report(report: Dict, *, show: Callable[[Dict], None],
                  out: Optional[str], tool_file: str,
                  argv: Optional[Sequence[str]] = None) -> Dict:
    """Add the command to ``report``, print it with ``show`` and write it
    to ``out`` (if given): the last steps of every benchmark tool.

    Returns:
        dict: ``report``, with ``command`` (:func:`tool_command`).
    """
    report['command'] = tool_command(tool_file, argv)
    show(report)
    write_report(out, report)
    return report
