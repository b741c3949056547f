"""A user's config file and --cfg-options: one line naming the file, the
line or the key, and the fix."""
import warnings

import pytest
from mmengine.config import Config

from pcm_plugin.engine.config_input import (
    TRAIN_SECTIONS,
    check_override_types,
    read_config,
    require_sections,
)


@pytest.mark.parametrize('text, line, reason', [
    ('x = (\n', 1, "SyntaxError: '(' was never closed"),
    ('a = 1\nb = dict(x=2)\nc = undefined\n', 3,
     "NameError: name 'undefined' is not defined"),
    ("import os\nx = os.path.join('a', 'b')\n", 2,
     "RuntimeError: a config with `import` lines is read in mmengine's lazy "
     'mode, where calling an imported function fails: write the value '
     'itself, or drop the import'),
], ids=['syntax', 'name', 'lazy_import_call'])
def test_bad_input_config_that_fails_to_load(tmp_path, text, line, reason):
    path = tmp_path / 'bad.py'
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_config(str(path))
    assert str(err.value) == (f'config {path} could not be loaded ({path}:'
                              f'{line}: {reason})')


def test_bad_input_config_whose_base_fails(tmp_path):
    """The failing line is the base file's, not the config's."""
    (tmp_path / 'base.py').write_text('x = 1\ny = 1 / 0\n')
    path = tmp_path / 'child.py'
    path.write_text("_base_ = ['base.py']\n")
    with pytest.raises(ValueError) as err:
        read_config(str(path))
    assert str(err.value) == (
        f'config {path} could not be loaded ({tmp_path / "base.py"}:2: '
        'ZeroDivisionError: division by zero)')
    path.write_text("_base_ = ['gone.py']\n")
    with pytest.raises(ValueError, match=r'could not be loaded \('
                       r'FileNotFoundError: .*gone.py'):
        read_config(str(path))


def test_bad_input_yaml_config_names_its_line(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('x: [\n')
    with pytest.raises(ValueError, match=rf'^config {path} could not be '
                       r'loaded \(ParserError: .*line 2, column 1\)$'):
        read_config(str(path))


@pytest.fixture
def cfg():
    return Config(dict(
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=5e-4,
                                          betas=(0.9, 0.999))),
        train_cfg=dict(max_epochs=12), randomness=dict(deterministic=False),
        model=dict(type='PCMNet', mixup=dict(top_k=3), tokenizer='tok.json'),
        param_scheduler=[dict(type='NoamLR', warmup=10000)],
        load_from=None))


@pytest.mark.parametrize('key, value, expected', [
    ('optim_wrapper.optimizer.lr', 'abc', "optim_wrapper.optimizer.lr='abc':"
     ' the config holds a number there (0.0005); give a number'),
    ('train_cfg.max_epochs', 'abc', "train_cfg.max_epochs='abc': the config "
     'holds a number there (12); give a number'),
    ('train_cfg.max_epochs', True, 'train_cfg.max_epochs=True: the config '
     'holds a number there (12); give a number'),
    ('randomness.deterministic', 'abc', "randomness.deterministic='abc': the "
     'config holds true or false there (False); give true or false'),
    ('optim_wrapper.optimizer.betas', 0.9, 'optim_wrapper.optimizer.betas=0.9:'
     ' the config holds a list there ((0.9, 0.999)); give a list, e.g. '
     'optim_wrapper.optimizer.betas=[a,b]'),
    ('model.mixup', 'abc', "model.mixup='abc': the config holds a section "
     'there; set its keys one by one, e.g. model.mixup.top_k=...'),
    ('model.tokenizer', [1, 2], 'model.tokenizer=[1, 2]: the config holds a '
     "word or path there ('tok.json'); give one"),
    ('param_scheduler.0.warmup', 'abc', "param_scheduler.0.warmup='abc': the "
     'config holds a number there (10000); give a number'),
], ids=['lr_word', 'epochs_word', 'epochs_bool', 'bool_word', 'list_number',
        'section_word', 'path_list', 'list_item_word'])
def test_bad_input_cfg_option_of_the_wrong_type(cfg, key, value, expected):
    with pytest.raises(ValueError) as err:
        check_override_types(cfg, {key: value})
    assert str(err.value) == f'--cfg-options {expected}'


@pytest.mark.parametrize('key, value', [
    ('optim_wrapper.optimizer.lr', 1),  # an int for a float
    ('train_cfg.max_epochs', 2.0),
    ('randomness.deterministic', True),
    ('optim_wrapper.optimizer.betas', [0.8, 0.9]),  # a list for a tuple
    ('model.tokenizer', 2024),  # a name of digits
    ('model.mixup', None),
    ('model.mixup', dict(top_k=4)),
    ('load_from', 'x.pth'),  # None in the config: anything
    ('optimizer.lr', 'abc'),  # not in the config: nothing to compare
    ('param_scheduler.3.warmup', 'abc'),
])
def test_cfg_options_that_fit_pass(cfg, key, value):
    check_override_types(cfg, {key: value})


@pytest.mark.parametrize('key, close', [
    ('train_cfg.max_epoch', 'train_cfg.max_epochs'),
    ('model.mixup.top_kk', 'model.mixup.top_k'),
    ('modle.mixup.top_k', 'model'),  # the first missing part is named
    ('optim_wraper.optimizer.lr', 'optim_wrapper'),
])
def test_bad_input_misspelt_cfg_option_is_warned_with_the_close_key(
        cfg, key, close):
    missing = key.split('.')[:close.count('.') + 1]
    with pytest.warns(UserWarning) as record:
        check_override_types(cfg, {key: 5})
    assert len(record) == 1
    assert str(record[0].message) == (
        f'--cfg-options {key}: the config has no {".".join(missing)}, but '
        f'has {close}: a misspelt key is added as a new key and changes '
        f'nothing; did you mean {close}?')


@pytest.mark.parametrize('key', [
    'model.reranker',  # a new section, far from every key at its place
    'model.mixup.selection',
    'param_scheduler.3.warmup',  # past the list's end
    'model.tokenizer.x',  # under a value that is not a section
])
def test_new_cfg_option_keys_far_from_any_key_pass_silently(cfg, key):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_override_types(cfg, {key: 5})


def test_bad_input_config_without_the_sections_a_tool_needs(tmp_path):
    path = tmp_path / 'empty.py'
    path.write_text('x = 1\n')
    cfg = read_config(str(path))
    with pytest.raises(KeyError) as err:
        require_sections(cfg, TRAIN_SECTIONS, 'tools/train.py')
    assert err.value.args[0] == (
        f'config {path} has no model, train_dataloader, train_cfg, '
        'optim_wrapper: tools/train.py needs model, train_dataloader, '
        'train_cfg, optim_wrapper (inherit them with _base_, as '
        'configs/pcm_coco.py does)')
    cfg.merge_from_dict(dict(model=dict(type='X'), train_dataloader={},
                             train_cfg={}, optim_wrapper={}))
    require_sections(cfg, TRAIN_SECTIONS, 'tools/train.py')  # empty is set
