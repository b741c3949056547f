# Copyright (c) pcm_plugin authors. MIT licence.
"""Error-or-counted-skip policy for bad input items.

Every converter meets the same choice on a malformed row, a missing image or
an empty caption: stop with a message naming the file and the line, or (with
``--skip-bad``) log it, count it and go on. :class:`BadInputPolicy` makes
that choice in one place so all tools behave and report alike.
"""
import logging
from collections import Counter
from typing import Dict, List

logger = logging.getLogger(__name__)


class BadInputError(ValueError):
    """Bad input data; the message names the file and the line or key."""


class BadInputPolicy:
    """Raise on bad items, or count and log them when ``skip_bad`` is set.

    Args:
        skip_bad (bool): Count and skip instead of raising. Defaults to
            False.
        max_logged (int): Log at most this many skipped items per kind
            (the rest are only counted). Defaults to 10.
    """

    SKIP_HINT = ('fix the input, or pass --skip-bad to skip and count such '
                 'items')

    def __init__(self, *, skip_bad: bool = False, max_logged: int = 10):
        self.skip_bad = skip_bad
        self.max_logged = max_logged
        self.counts: Counter = Counter()
        self.examples: Dict[str, List[str]] = {}

    def bad(self, kind: str, message: str, *, hint: str = '') -> None:
        """Handle one bad item.

        Args:
            kind (str): Short category for the summary, e.g.
                ``'malformed row'``.
            message (str): Names the file and line/key and what is wrong.
            hint (str): How to fix it; defaults to :attr:`SKIP_HINT`.

        Raises:
            BadInputError: unless ``skip_bad`` is set.
        """
        if not self.skip_bad:
            raise BadInputError(f'{message}; {hint or self.SKIP_HINT}')
        self.counts[kind] += 1
        logged = self.examples.setdefault(kind, [])
        if len(logged) < self.max_logged:
            logged.append(message)
            logger.warning('skipped (%s): %s', kind, message)

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line per kind: ``skipped 3 x missing image``."""
        if not self.counts:
            return 'skipped nothing'
        return '; '.join(f'skipped {n} x {kind}'
                         for kind, n in sorted(self.counts.items()))
