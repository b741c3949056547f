"""The one progress helper: tqdm on a terminal, plain lines in a log."""
import io

from pcm_plugin.utils.progress import PlainProgress, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gives_one_plain_line_at_the_end():
    stream = io.StringIO()
    assert list(progress_bar(range(3), desc='captioning', unit='img',
                         stream=stream)) == [0, 1, 2]
    assert stream.getvalue() == 'captioning: 3/3 img (100%), 0 s\n'


def test_a_line_every_interval_and_none_repeated_at_the_end():
    stream = io.StringIO()
    with progress_bar(total=2, desc='steps', stream=stream, every_s=0) as bar:
        bar.update()
        bar.set_postfix(loss='0.500')
        bar.update()
    assert stream.getvalue().splitlines() == [
        'steps: 1/2 it (50%), 0 s', 'steps: 2/2 it (100%), 0 s, loss=0.500']
    assert '\r' not in stream.getvalue()


def test_unknown_total_resumed_count_and_disabled():
    stream = io.StringIO()
    bar = progress_bar(iter('ab'), desc='rows', initial=5, stream=stream)
    assert isinstance(bar, PlainProgress) and list(bar) == ['a', 'b']
    assert stream.getvalue() == 'rows: 7 it, 0 s\n'
    quiet = io.StringIO()
    assert list(progress_bar(range(2), stream=quiet, disable=True)) == [0, 1]
    assert quiet.getvalue() == ''


def test_a_terminal_gets_the_redrawn_bar():
    stream = FakeTerminal()
    for _ in progress_bar(range(2), desc='captioning', stream=stream):
        pass
    assert '\r' in stream.getvalue() and 'captioning' in stream.getvalue()


def test_default_stream_is_stderr_never_stdout(capsys):
    list(progress_bar(range(2), desc='counting'))
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err == 'counting: 2/2 it (100%), 0 s\n'


def test_every_progress_bar_goes_through_the_helper():
    """No module or tool draws its own bar (tqdm, rich, mmengine's
    ProgressBar, mmpretrain's track) or a ``\\r`` line."""
    import glob
    import os.path as osp

    from tests.helpers import REPO_ROOT
    drawing = ('tqdm', 'rich.progress', 'ProgressBar', 'track(',
               "write('\\r", "write(f'\\r", "end='\\r'")
    sources = [p for pattern in ('pcm_plugin/**/*.py', 'tools/**/*.py',
                                 'projects/*/pcm_*/**/*.py',
                                 'projects/*/tools/**/*.py')
               for p in glob.glob(osp.join(REPO_ROOT, pattern),
                                  recursive=True)]
    helper = osp.join(REPO_ROOT, 'pcm_plugin', 'utils', 'progress.py')
    found = [f'{osp.relpath(p, REPO_ROOT)}: {word}' for p in sources
             if p != helper for word in drawing
             if word in open(p, encoding='utf-8').read()]
    assert len(sources) > 50 and found == []
