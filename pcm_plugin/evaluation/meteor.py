"""METEOR 1.5 (pycocoevalcap's jar), fed in bulk so it can run beside
the pure-Python scorers.

pycocoevalcap's ``Meteor.compute_score`` sends one ``SCORE`` line per image
and waits for each answer. In a thread beside BLEU/ROUGE/CIDEr, every one
of those answers (4,800 on the COCO subset) also waits for the GIL, up to
the 5 ms switch interval, and METEOR ends up slower than alone. Here a
writer thread sends all lines at once and the answers are read in large
chunks. The lines are pycocoevalcap's to the byte and METEOR scores each
one on its own, so the JVM returns the same numbers.
"""
import os
import os.path as osp
import select
import subprocess
import tempfile
import threading
from typing import Dict, List, Optional, Sequence

from pycocoevalcap.meteor import meteor
from pycocoevalcap.meteor.meteor import METEOR_JAR

__all__ = ['MeteorError', 'MeteorProcess', 'meteor_command']

# JIT tier C1 only: METEOR's scoring loop is short-lived, and C2's
# compilation cost more CPU than it saved on the COCO subset (measured in
# docs/benchmarks/speed.md). Java floating point is strict, so the flag changes
# no number. (The serial collector used less memory but ran full
# collections: slower.)
JVM_FLAGS = ('-XX:TieredStopAtLevel=1', )
# Longest wait for the JVM's next answer. The first one comes only once the
# paraphrase table is loaded, which takes several times longer on a busy
# machine than on an idle one: the limit leaves room for that.
ANSWER_TIMEOUT_S = 600.0


class MeteorError(RuntimeError):
    """The METEOR JVM could not start, died or stopped answering."""


def meteor_jar_dir() -> str:
    """pycocoevalcap's ``meteor`` folder: the jar and its ``data/``."""
    return osp.dirname(osp.abspath(meteor.__file__))


def meteor_command() -> List[str]:
    """pycocoevalcap 1.2's METEOR command, with :data:`JVM_FLAGS` added.

    Returns:
        list: The argv; run it in :func:`meteor_jar_dir`.
    """
    return ['java', *JVM_FLAGS, '-jar', '-Xmx2G', METEOR_JAR, '-', '-',
            '-stdio', '-l', 'en', '-norm']


def score_line(hypothesis: str, references: Sequence[str]) -> str:
    """The ``SCORE`` request of ``Meteor._stat`` (same cleaning)."""
    hypothesis = hypothesis.replace('|||', '').replace('  ', ' ')
    return ' ||| '.join(('SCORE', ' ||| '.join(references), hypothesis))


class MeteorProcess:
    """One METEOR JVM. It starts on construction, so that it loads its
    paraphrase table (most of its cost) while other work runs.

    Use it as a context manager. :meth:`kill` may be called from any
    thread to make a running :meth:`score` fail at once.
    """

    def __init__(self) -> None:
        # A file, not a pipe: nobody reads stderr while METEOR runs, and a
        # full pipe would block the JVM.
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                meteor_command(), cwd=meteor_jar_dir(),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr)
        except OSError as err:
            self._stderr.close()
            raise MeteorError(f'could not start METEOR: {err}') from err
        self._pending = b''

    def __enter__(self) -> 'MeteorProcess':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score(self, gts: Dict[object, List[str]],
              res: Dict[object, List[str]]) -> float:
        """Corpus METEOR, as ``Meteor.compute_score`` computes it.

        Args:
            gts (dict): Image key to its tokenized references.
            res (dict): Same keys, each to a list of one tokenized
                hypothesis.

        Returns:
            float: The corpus score (what pycocoevalcap returns first).
        """
        if not gts or gts.keys() != res.keys() or any(
                len(hyp) != 1 for hyp in res.values()):
            raise ValueError('METEOR needs the same non-empty keys in gts '
                             'and res, and one hypothesis per key')
        stats = self._ask([score_line(res[k][0], gts[k]) for k in gts])
        # One score per image, then the corpus score.
        answers = self._ask(['EVAL' + ''.join(f' ||| {s}' for s in stats)],
                            answers=len(stats) + 1)
        return float(answers[-1])

    def kill(self) -> None:
        """Stop the JVM (thread-safe); a running :meth:`score` fails."""
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """Stop the JVM and release its pipes. Call it once no thread
        uses the process any more (their reads would see closed files)."""
        self.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                stream.close()
            except OSError:  # unflushed input to a dead JVM
                pass

    def _ask(self, lines: List[str],
             answers: Optional[int] = None) -> List[str]:
        """Send ``lines``; return the next ``answers`` answer lines
        (default: one per line sent), stripped."""
        writer = threading.Thread(target=self._write, args=(lines, ),
                                  daemon=True)
        writer.start()
        try:
            got = self._read_lines(len(lines) if answers is None else answers)
        finally:
            writer.join()  # never blocks long: the JVM read all or is dead
        return [line.decode().strip() for line in got]

    def _write(self, lines: List[str]) -> None:
        try:
            self.proc.stdin.write(''.join(f'{line}\n'
                                          for line in lines).encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the JVM is gone: the reader says so, with its stderr

    def _read_lines(self, count: int) -> List[bytes]:
        """The next ``count`` lines of stdout, read in large chunks."""
        fd = self.proc.stdout.fileno()
        buffer = bytearray(self._pending)
        newlines = buffer.count(b'\n')
        while newlines < count:
            ready, _, _ = select.select([fd], [], [], ANSWER_TIMEOUT_S)
            if not ready:
                self._fail(f'no answer for {ANSWER_TIMEOUT_S:.0f} s')
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self._fail(f'the JVM exited after {newlines} of {count} '
                           'answers')
            buffer += chunk
            newlines += chunk.count(b'\n')
        *lines, rest = bytes(buffer).split(b'\n', count)
        self._pending = rest
        return lines

    def _fail(self, reason: str) -> None:
        self.kill()
        code = self.proc.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors='replace').strip()
        raise MeteorError(
            f'METEOR ({" ".join(self.proc.args)}) failed: {reason} (exit '
            f'code {code}); its stderr: {stderr[-2000:] or "(empty)"}')
