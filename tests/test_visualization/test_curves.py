"""Training curves from mmengine's scalars.json."""
import json

import pytest

from pcm_plugin.visualization.curves import (
    find_scalars,
    plot_curves,
    read_scalars,
)


def _log(folder, lines):
    run = folder / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    path = run / 'scalars.json'
    path.write_text('\n'.join(lines) + '\n')
    return path


def test_train_and_val_rows_are_told_apart_and_drawn(tmp_path):
    rows = [dict(lr=1e-3 * i, loss=2.0 / i, iter=10 * i, step=10 * i,
                 epoch=1) for i in range(1, 5)]
    rows += [dict(CIDEr=0.5, Bleu_4=0.2, step=1),
             dict(CIDEr=0.7, Bleu_4=0.3, step=2)]
    path = _log(tmp_path, [json.dumps(r) for r in rows])
    assert find_scalars(str(tmp_path)) == str(path)
    train, val = read_scalars(str(path))
    assert [r['iter'] for r in train] == [10, 20, 30, 40]
    assert [r['CIDEr'] for r in val] == [0.5, 0.7]
    out = tmp_path / 'curves.png'
    keys = plot_curves(str(tmp_path), str(out),
                       train_keys=('loss', 'lr', 'absent'),
                       val_keys=('CIDEr', 'Bleu_4'))
    assert keys == ['loss', 'lr', 'CIDEr', 'Bleu_4']
    assert out.stat().st_size > 1000


def test_bad_input_damaged_log_and_missing_run(tmp_path):
    path = _log(tmp_path, ['{"loss": 1.0, "iter": 1}', '{"loss": 0.'])
    with pytest.raises(ValueError, match=r'scalars.json:2: not JSON'):
        read_scalars(str(path))
    with pytest.raises(FileNotFoundError, match='no \\*/vis_data'):
        find_scalars(str(tmp_path / 'nothing'))
    good = _log(tmp_path / 'b', ['{"time": 1.0, "iter": 1}'])
    with pytest.raises(ValueError, match='has none of'):
        plot_curves(str(good), str(tmp_path / 'c.png'))
