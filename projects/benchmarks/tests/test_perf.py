"""The benchmark tool: a smoke run (no timing asserted) and the reference
greedy search it times against the cached one."""
import json
import tempfile

import torch
import torch.nn.functional as F

from pcm_plugin.testing.startup import tool_scripts
from tests.helpers import REPO_ROOT, tool_main


def test_smoke_run_writes_every_measurement(tmp_path, monkeypatch):
    temp = tmp_path / 'temp'
    temp.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(temp))
    out = tmp_path / 'bench.json'
    assert tool_main('projects/benchmarks/tools/benchmark.py')(
        ['--smoke', '--threads', '1', '--out', str(out)]) == 0
    # Every part shared one workspace, removed at the end.
    assert not list(temp.glob('pcm_bench_*'))
    report = json.loads(out.read_text())
    train = report['train_step']
    assert train['full']['flops'] > train['base']['flops'] > 0
    assert set(report['decoding']) >= {
        'ours_beam3', 'hf_bart_beam3', 'greedy_cache', 'greedy_no_cache',
        'beam_speedup_over_hf_bart', 'cache_speedup'}
    data = report['data']  # the real dataset + DataLoader, both layouts
    assert data['bytes_store'] > 0
    assert data['rows']['store_workers0']['samples_per_s'] > 0
    assert data['rows']['npz_workers0']['samples_per_s'] > 0
    variants = report['variants']  # the smoke run compiles nothing
    names = {f'{impl}-{dtype}' for impl in ('eager', 'sdpa')
             for dtype in ('fp32', 'bf16')}
    assert set(variants['train_step']) == set(variants['beam3']) == names
    assert variants['beam3']['eager-fp32']['over_eager_fp32'] == 1.0
    startup = report['startup']
    assert startup['imports']['pcm_plugin_over_mmpretrain'] > 0
    assert set(startup['help']['tools']) == set(tool_scripts(REPO_ROOT))
    assert startup['help']['slowest'] in startup['help']['tools']


def test_one_part_run_writes_only_that_part(tmp_path):
    out = tmp_path / 'decoding.json'
    assert tool_main('projects/benchmarks/tools/benchmark.py')(
        ['--decoding-only', '--smoke', '--threads', '1', '--trained-run',
         'none', '--out', str(out)]) == 0
    report = json.loads(out.read_text())
    assert report['threads'] == 1
    assert report['decoding']['cache_speedup'] > 0
    assert 'train_step' not in report and 'startup' not in report


def test_uncached_greedy_equals_the_cached_search(tmp_path):
    from projects.benchmarks.pcm_benchmarks import perf
    from projects.benchmarks.pcm_benchmarks.decoding_bench import (
        greedy_without_cache,
    )
    size = dict(d=32, layers=2, heads=2, ffn=64, vocab=40, patches=4,
                patch_dim=24, global_dim=16, words=8, batch=5, concepts=8)
    torch.manual_seed(0)
    model = perf.build_coco_size(str(tmp_path), mixup=True, size=size).eval()
    inputs, _ = perf.random_batch(size)
    with torch.no_grad():
        memory, mask = model.encode(inputs)
        cached, _ = model.decoder.generate(memory, mask, beam_size=1,
                                           max_len=8)
        plain = greedy_without_cache(model.decoder, memory, mask, 8)
    width = max(cached.shape[1], plain.shape[1])
    assert torch.equal(F.pad(cached, (0, width - cached.shape[1])),
                       F.pad(plain, (0, width - plain.shape[1])))


def test_flops_of_a_linear_layer_by_hand():
    from projects.benchmarks.pcm_benchmarks.perf import count_flops
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)

    def step():
        layer(x).sum().backward()
    # forward 2*3*8*4, backward: grad input and grad weight, each as much.
    assert count_flops(step) == 3 * 2 * 3 * 8 * 4
