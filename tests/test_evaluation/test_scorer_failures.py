"""A scorer that fails while the others run beside it: a clear error, and
no hang, no JVM left running.

METEOR's JVM is replaced by small Python programs (``meteor_command``
patched) that miss their jar, die after one answer, or never answer; none
of these tests starts METEOR's real JVM. Each call runs under a generous
liveness bound (:func:`finishes`): a hang fails the test instead of
stopping the suite. No timing is asserted.
"""
import sys
import threading

import pytest

from pcm_plugin.evaluation import caption_metric, meteor
from pcm_plugin.evaluation.caption_metric import score_captions
from pcm_plugin.evaluation.meteor import MeteorError
from tests.test_evaluation.test_caption_metric import (
    PREDICTIONS,
    REFERENCES,
)

# Far more than any of these calls needs (a PTB tokenizer JVM, seconds).
LIVENESS_S = 120
# Answers the first SCORE request with made-up stats, then crashes.
CRASH = ("import sys; sys.stdin.readline(); print('1 2 3', flush=True); "
         "sys.stdin.readline(); sys.stderr.write("
         "'Exception in thread main java.lang.OutOfMemoryError'); "
         'sys.exit(3)')
# Reads its input and never answers.
SILENT = 'import sys; sys.stdin.read()'


def finishes(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing the test if it has not returned or
    raised within :data:`LIVENESS_S` (the thread is a daemon)."""
    outcome = {}

    def call():
        try:
            outcome['value'] = fn(*args, **kwargs)
        except BaseException as err:  # re-raised in the test's thread
            outcome['error'] = err

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(LIVENESS_S)
    assert not thread.is_alive(), f'{fn.__name__} hung'
    if 'error' in outcome:
        raise outcome['error']
    return outcome['value']


@pytest.fixture
def fake_meteor(monkeypatch):
    """Run ``python -c CODE`` instead of METEOR's JVM; returns the list of
    the :class:`MeteorProcess` objects made, to check they ended."""
    started = []

    class Recorded(meteor.MeteorProcess):
        def __init__(self):
            super().__init__()
            started.append(self)

    def use(code):
        monkeypatch.setattr(meteor, 'meteor_command',
                            lambda: [sys.executable, '-c', code])
        monkeypatch.setattr(caption_metric, 'MeteorProcess', Recorded)
        return started
    return use


def test_meteor_jar_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(meteor, 'meteor_command',
                        lambda: ['java', '-jar', 'no-such-meteor.jar'])
    with pytest.raises(MeteorError, match=r'(?s)exited after 0 of 3 answers'
                       r'.*Unable to access jarfile no-such-meteor\.jar'):
        finishes(score_captions, PREDICTIONS, REFERENCES)


def test_meteor_crash_mid_run_is_a_clear_error(fake_meteor):
    started = fake_meteor(CRASH)
    with pytest.raises(MeteorError, match=r'(?s)after 1 of 3 answers '
                       r'\(exit code 3\).*OutOfMemoryError'):
        finishes(score_captions, PREDICTIONS, REFERENCES)
    assert started and started[0].proc.poll() is not None


def test_meteor_that_never_answers_times_out(fake_meteor, monkeypatch):
    started = fake_meteor(SILENT)
    monkeypatch.setattr(meteor, 'ANSWER_TIMEOUT_S', 1.0)
    with pytest.raises(MeteorError, match='no answer for 1 s'):
        finishes(score_captions, PREDICTIONS, REFERENCES)
    assert started[0].proc.poll() is not None


def test_python_scorer_failure_stops_meteor(fake_meteor, monkeypatch):
    """CIDEr fails while METEOR waits in its thread: CIDEr's error comes
    out at once and METEOR's process is killed, not left to wait."""
    from pcm_plugin.evaluation.cider import FastCider
    started = fake_meteor(SILENT)

    def broken(self, gts, res):
        raise ZeroDivisionError('simulated CIDEr bug')
    monkeypatch.setattr(FastCider, 'compute_score', broken)
    with pytest.raises(ZeroDivisionError, match='simulated CIDEr bug'):
        finishes(score_captions, PREDICTIONS, REFERENCES)
    assert started[0].proc.poll() is not None


def test_tokenizer_failure_stops_meteor(fake_meteor, monkeypatch):
    """METEOR's JVM starts before the tokenizer: it must not outlive a
    tokenizer failure."""
    started = fake_meteor(SILENT)

    def broken(captions):
        raise RuntimeError('simulated tokenizer failure')
    monkeypatch.setattr(caption_metric, 'ptb_tokenize', broken)
    with pytest.raises(RuntimeError, match='simulated tokenizer failure'):
        finishes(score_captions, PREDICTIONS, REFERENCES)
    assert started[0].proc.poll() is not None
