"""Scaling: the least-squares line on hand-built numbers, the COCO
projection written out, and a smoke run of the tool (no timing
asserted)."""
import json

import pytest

from projects.benchmarks.pcm_benchmarks.scaling import (
    COCO_TRAIN,
    coco_projection,
    fit_line,
)
from tests.helpers import tool_main


def test_fit_line_passes_through_exact_points():
    xs = [8, 16, 32, 64, 128]
    fit = fit_line(xs, [0.25 + 0.0375 * x for x in xs])
    assert fit['a'] == pytest.approx(0.25, abs=1e-12)
    assert fit['b'] == pytest.approx(0.0375, abs=1e-12)
    assert fit['r2'] == pytest.approx(1.0)
    assert fit['max_abs_residual'] < 1e-12


def test_fit_line_is_least_squares_off_the_line():
    # mean x 1, mean y 2/3: b = (2/3 + 1/3) / 2, a = 2/3 - b.
    fit = fit_line([0, 1, 2], [0, 1, 1])
    assert fit['b'] == pytest.approx(0.5)
    assert fit['a'] == pytest.approx(1 / 6)
    assert fit['max_abs_residual'] == pytest.approx(1 / 3)


def test_fit_line_needs_two_distinct_xs():
    with pytest.raises(ValueError):
        fit_line([32, 32], [1.0, 1.1])


def test_projection_is_the_formula_of_the_official_recipe():
    p = coco_projection(dict(a=0.1, b=0.05))
    # 12 epochs of floor(542,401 / 32) = 16,950 iterations (method.md).
    assert p['iterations'] == COCO_TRAIN['iterations'] == 12 * 16_950
    assert p['step_s'] == pytest.approx(1.7)
    assert p['days'] == pytest.approx(203_400 * 1.7 / 86_400)
    assert p['released_days'] == pytest.approx(169_500 * 1.7 / 86_400)
    assert p['per_sample_limit_days'] == pytest.approx(
        12 * 542_401 * 0.05 / 86_400)
    assert coco_projection(dict(a=0.1, b=0.05), batch=64)['iterations'] \
        == 12 * 8_475


def test_smoke_run_reports_every_cell_and_the_projection(tmp_path):
    out = tmp_path / 'scaling.json'
    assert tool_main('projects/benchmarks/tools/benchmark_scaling.py')(
        ['--smoke', '--threads', '1', '--skip', '4x6',
         '--out', str(out)]) == 0
    report = json.loads(out.read_text())
    cells = {(r['batch'], r['length']) for r in report['rows']}
    assert cells == {(2, 4), (4, 4), (2, 6)}
    for row in report['rows']:
        assert row['median_s'] > 0 and row['transient_bytes'] > 0
        assert row['peak_bytes'] == row['static_bytes'] \
            + row['transient_bytes']
    # length 6 has one batch left: no line
    assert set(report['fits']) == set(report['memory_fits']) == {'4'}
    assert report['skipped'] == [[4, 6]]
    projection = report['projection']  # --smoke projects with length 4
    assert projection['length'] == 4
    assert projection['a'] == report['fits']['4']['a']
    assert projection['iterations'] == COCO_TRAIN['iterations']
