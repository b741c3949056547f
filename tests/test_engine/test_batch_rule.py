"""The effective batch of N processes and the --auto-scale-lr rule."""
import pytest
from mmengine.config import Config

from pcm_plugin.engine.batch_rule import apply_batch_rule
from tests.helpers import REPO_ROOT


def _coco():
    return Config.fromfile(f'{REPO_ROOT}/configs/pcm_coco.py')


def test_lr_is_left_alone_unless_asked():
    cfg = _coco()
    line = apply_batch_rule(cfg, 8)
    assert line.startswith('effective batch 256 = 8 processes x 32')
    assert 'tuned for batch 32' in line
    assert cfg.param_scheduler[0].get('factor', 1.0) == 1.0
    assert apply_batch_rule(_coco(), 1) == (
        'effective batch 32 = 1 process x 32')


def test_auto_scale_lr_scales_the_noam_schedule_linearly():
    """mmengine scales the optimizer's lr, which NoamLR ignores: the
    schedule's own factor must carry the ratio."""
    cfg = _coco()
    cfg.auto_scale_lr.enable = True
    line = apply_batch_rule(cfg, 4)
    assert line.endswith('auto_scale_lr: lr x 4 (base batch 32)')
    assert cfg.param_scheduler[0].factor == 4.0
    from pcm_plugin.engine.noam_lr import noam_lr
    assert noam_lr(10000, factor=cfg.param_scheduler[0].factor) == (
        pytest.approx(4 * noam_lr(10000)))


def test_bad_input_auto_scale_lr_without_base_batch_is_an_error():
    cfg = _coco()
    cfg.auto_scale_lr = dict(enable=True)
    with pytest.raises(ValueError, match='base_batch_size'):
        apply_batch_rule(cfg, 2)
