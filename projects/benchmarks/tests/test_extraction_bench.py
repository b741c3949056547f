"""Feature extraction against the bare image-tower forward: a smoke run of
the tool on generated images (no timing asserted), the folder it must be
given, and the profile's grouping."""
import json

import pytest

from projects.benchmarks.pcm_benchmarks.extraction_profile import (
    cumulative_seconds,
)
from tests.helpers import tool_main


def test_smoke_run_times_tool_startup_and_bare_forward(tmp_path):
    out = tmp_path / 'extract.json'
    assert tool_main('projects/benchmarks/tools/benchmark_extraction.py')(
        ['--smoke', '--threads', '1', '--out', str(out)]) == 0
    bare = json.loads(out.read_text())['bare']
    assert set(bare['times']) == {'tool_w0', 'tool_w1', 'tool_startup',
                                  'bare_forward'}
    for w in (0, 1):
        assert bare[f'ratio_w{w}'] > 0
        assert bare[f'steady_ratio_w{w}'] >= bare[f'ratio_w{w}']
    parts = bare['profile']['parts_s']
    assert parts['loop'] > 0 and parts['forward'] > 0
    assert parts['model_load'] > 0 and parts['checkpoint_sha256'] > 0
    assert bare['coco_extraction_days']['images'] == 542_401


def test_bad_input_no_image_folder_and_no_smoke(tmp_path):
    # No default folder is guessed beside the repository.
    with pytest.raises(SystemExit, match='--image-dir DIR is required'):
        tool_main('projects/benchmarks/tools/benchmark_extraction.py')(
            ['--out', str(tmp_path / 'extract.json')])
    assert not (tmp_path / 'extract.json').exists()


def test_cumulative_seconds_matches_file_and_function():
    stats = {('/x/pcm_plugin/utils/fileio.py', 15, 'file_sha256'):
             (1, 1, 0.1, 0.5, {}),
             ('/y/other/fileio.py', 3, 'file_sha256'): (1, 1, 0.1, 9.0, {}),
             ('/x/pcm_plugin/utils/fileio.py', 30, 'other'):
             (1, 1, 0.1, 7.0, {})}
    assert cumulative_seconds(stats, 'pcm_plugin/utils/fileio.py',
                              'file_sha256') == 0.5
