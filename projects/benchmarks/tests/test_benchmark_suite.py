"""The benchmark tool's parts and tables (package side); timing-free."""
import pytest

from projects.benchmarks.pcm_benchmarks import benchmark_tables as tables
from projects.benchmarks.pcm_benchmarks.benchmark_suite import (
    BenchmarkOptions,
    run,
)
from tests.helpers import REPO_ROOT, tool_main


def _timing(median_s, captions=None):
    row = dict(median_s=median_s, iqr_s=median_s / 10,
               cpu_median_s=median_s * 2)
    if captions is not None:
        row['captions_per_s'] = captions
    return row


def test_decoding_table_on_a_hand_built_report():
    rows = dict(ours_beam3=_timing(0.5, 64), greedy_cache=_timing(0.1, 320),
                beam_speedup_over_hf_bart=1.5,
                beam_speedup_over_hf_bart_cpu=1.25, steps=20, bart_steps=20,
                cache_speedup=3.0, cache_speedup_cpu=2.5,
                encoder=dict(all_tokens=_timing(0.002)))
    text = tables.decoding_table(dict(
        decoding=rows, decoding_trained=dict(skipped='no trained run')))
    assert text.splitlines() == [
        '| random weights: ours_beam3 | 500 ms | 50 ms | 64 captions/s, '
        'CPU 1000 ms |',
        '| random weights: greedy_cache | 100 ms | 10 ms | 320 captions/s, '
        'CPU 200 ms |',
        '| random weights: beam-3 speed-up over HF BART | 1.50x | | CPU time '
        '1.25x; steps: ours 20, BART 20 |',
        '| random weights: cache speed-up (greedy) | 3.00x | | CPU time '
        '2.50x |',
        '| encoder, test layout, all_tokens | 2 ms | 0 ms | CPU 4 ms |',
        '| trained run | skipped | | no trained run |']


def test_report_text_shows_the_parts_the_report_holds():
    report = dict(threads=1, load_before=1.0, load_after=2.5,
                  evaluation=dict(skipped='no ../shared'))
    assert tables.report_text(report) == (
        'threads 1, load 1.00 -> 2.50\n\nevaluation skipped: no ../shared\n')
    report['matmul_flops_per_s'] = 80e9
    assert tables.report_text(report).startswith(
        'threads 1, load 1.00 -> 2.50; matmul 80.0 GFLOP/s\n')


def test_bad_input_unknown_part_is_refused():
    options = BenchmarkOptions(repo=REPO_ROOT, shared_data='', smoke=True)
    with pytest.raises(ValueError, match="unknown part 'beam'"):
        run(options, only='beam')


def test_bad_input_two_only_flags_are_refused(tmp_path):
    with pytest.raises(SystemExit, match='choose one of the --\\*-only'):
        tool_main('projects/benchmarks/tools/benchmark.py')(
            ['--smoke', '--data-only', '--decoding-only'])
