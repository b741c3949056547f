"""Progress on stderr that reads well on a terminal and in a log.

Every progress bar of the package and its tools goes through
:func:`progress_bar`, so results printed on stdout (``caption_image.py ... >
out.tsv``) never carry a bar. On a terminal it is tqdm's bar, redrawn in
place with ``\\r``; when stderr is not a terminal (a log file, CI, a pipe)
a redrawn bar becomes one long line of ``\\r`` soup, so plain lines are
printed instead: one every ``every_s`` seconds and one when the work ends.
"""
import sys
import time
from typing import Iterable, Optional, TextIO

from tqdm import tqdm


def progress_bar(iterable: Optional[Iterable] = None, *,
             total: Optional[int] = None, desc: str = '', unit: str = 'it',
             initial: int = 0, disable: bool = False,
             stream: Optional[TextIO] = None, every_s: float = 30.0):
    """A progress bar over ``iterable`` (or updated by hand) on stderr.

    Args:
        iterable (Iterable, optional): What to iterate over; without it,
            call ``update(n)`` (and ``close()``, or use ``with``).
        total (int, optional): Expected count; ``len(iterable)`` when
            None and the iterable has one.
        desc (str): What the bar counts, e.g. ``'captioning'``.
        unit (str): The unit of the count. Defaults to ``'it'``.
        initial (int): Count already done (a resumed run).
        disable (bool): Show nothing. Defaults to False.
        stream (TextIO, optional): Where to write. Defaults to
            ``sys.stderr`` at the time of the call.
        every_s (float): Seconds between plain lines. Defaults to 30.

    Returns:
        A tqdm bar on a terminal, else a :class:`PlainProgress`; both
        iterate, ``update(n)``, ``set_postfix(**values)`` and ``close()``.
    """
    stream = sys.stderr if stream is None else stream
    if _is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit,
                    initial=initial, disable=disable, file=stream,
                    dynamic_ncols=True)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit,
                         initial=initial, disable=disable, stream=stream,
                         every_s=every_s)


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, 'isatty', None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainProgress:
    """Progress as whole lines, ``desc: n/total unit (p%), t s``.

    A line is printed when ``every_s`` seconds have passed since the last
    one, and a final line when the work ends (``close``, the end of the
    iteration or of a ``with`` block).

    Args:
        iterable, total, desc, unit, initial, disable, stream, every_s: As
            :func:`progress_bar` takes them (``stream`` required).
    """

    def __init__(self, iterable: Optional[Iterable] = None, *,
                 total: Optional[int] = None, desc: str = '',
                 unit: str = 'it', initial: int = 0, disable: bool = False,
                 stream: TextIO, every_s: float = 30.0) -> None:
        if total is None and iterable is not None:
            total = len(iterable) if hasattr(iterable, '__len__') else None
        self.iterable, self.total, self.n = iterable, total, initial
        self.desc, self.unit, self.stream = desc, unit, stream
        self.disable, self.every_s = disable, every_s
        self._start = self._last = time.monotonic()
        self._printed_n: Optional[int] = None
        self._postfix = ''
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self) -> 'PlainProgress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; print a line if ``every_s`` has passed."""
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._print(now)

    def set_postfix(self, **values) -> None:
        """Values shown after the count, e.g. ``loss=0.5``."""
        self._postfix = ', '.join(f'{k}={v}' for k, v in values.items())

    def close(self) -> None:
        """Print the final count (once)."""
        if not self._closed and self._printed_n != self.n:
            self._print(time.monotonic())
        self._closed = True

    def line(self, now: float) -> str:
        """The status line at time ``now`` (``time.monotonic``)."""
        count = f'{self.n}/{self.total}' if self.total else f'{self.n}'
        share = f' ({100 * self.n / self.total:.0f}%)' if self.total else ''
        text = (f'{self.desc}: {count} {self.unit}{share}, '
                f'{now - self._start:.0f} s')
        return text + (f', {self._postfix}' if self._postfix else '')

    def _print(self, now: float) -> None:
        self._last, self._printed_n = now, self.n
        if self.disable or self.stream is None:
            return
        self.stream.write(self.line(now) + '\n')
        self.stream.flush()
