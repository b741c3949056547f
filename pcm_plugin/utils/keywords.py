"""Unknown keyword arguments named at once, with the closest known ones.

Python's own ``TypeError: __init__() got an unexpected keyword argument``
comes at the end of a long traceback, and a component that forwards
``**kwargs`` (mmengine's ``CheckpointHook`` passes them to every save)
takes a typo silently and fails hours later.
"""
import difflib
import inspect
from typing import Callable, Iterable


def named_keywords(fn: Callable) -> set:
    """The keyword names ``fn`` declares (``**kwargs`` aside)."""
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'self'}


def takes_any_keyword(fn: Callable) -> bool:
    """Whether ``fn`` has ``**kwargs``."""
    return any(p.kind is p.VAR_KEYWORD
               for p in inspect.signature(fn).parameters.values())


def check_keywords(owner: str, given: Iterable[str],
                   allowed: Iterable[str]) -> None:
    """Refuse names in ``given`` that are not in ``allowed``.

    Args:
        owner (str): What takes them, for the message (e.g. a config key).
        given (Iterable[str]): The keyword names used.
        allowed (Iterable[str]): The names ``owner`` takes.

    Raises:
        ValueError: One line naming each unknown key and its closest
            known names.
    """
    allowed = sorted(allowed)
    unknown = [name for name in given if name not in allowed]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = ' or '.join(map(repr, difflib.get_close_matches(
            name, allowed, n=2)))
        hints.append(f'{name!r}' + (f' (did you mean {close}?)'
                                    if close else ''))
    raise ValueError(f'{owner}: unknown argument {", ".join(hints)}; it '
                     f'takes {", ".join(allowed)}')
