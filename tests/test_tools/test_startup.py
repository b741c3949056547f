"""Start-up (issue 11, target 7): every tool parses its arguments before
it imports a heavy library, and ``import pcm_plugin`` imports none that
mmpretrain does not import itself.

No timing is asserted (the project times nothing in tests): what makes
``--help`` take seconds is an import, and which modules a fresh process
loaded is exact. ``projects/benchmarks/tools/benchmark.py`` reports the
seconds.
"""
import argparse
import sys

import pytest

from projects.benchmarks.pcm_benchmarks.startup import (
    modules_imported_by,
    modules_loaded_by,
    tool_scripts,
)
from tests.conftest import REPO_ROOT, tool_main
from tools._cli import light_module, package_literals


@pytest.mark.parametrize('tool', tool_scripts(REPO_ROOT))
@pytest.mark.parametrize('args,status', [(['--help'], 0),
                                         (['--no-such-option'], 2)],
                         ids=['help', 'argument-error'])
def test_tool_answers_before_heavy_imports(tool, args, status):
    got, loaded = modules_loaded_by(REPO_ROOT, tool, args)
    assert got == status
    assert loaded == [], f'{tool} {args[0]} imported {loaded}'


def test_import_pcm_plugin_adds_no_heavy_library():
    ours = modules_imported_by('pcm_plugin', REPO_ROOT)
    # mmengine.optim imports transformers (to register its optimizers), so
    # joining mmpretrain's registry brings it; open_clip, diffusers and
    # matplotlib load only inside the functions that use them.
    assert set(ours) <= set(modules_imported_by('mmpretrain', REPO_ROOT))
    assert not {'open_clip', 'diffusers', 'matplotlib'} & set(ours)


def test_parser_constants_read_from_source_are_the_package_ones():
    from pcm_plugin.data_prep.annotations import TRAIN_ID_START
    from projects.mini_world.pcm_mini_world import ablation, mini_clip, world
    lab = 'projects.mini_world.pcm_mini_world'
    assert package_literals('data_prep.annotations')['TRAIN_ID_START'] \
        == TRAIN_ID_START
    found = package_literals('ablation', lab)
    assert found['VARIANTS'] == ablation.VARIANTS
    assert found['DEFAULT_VARIANTS'] == ablation.DEFAULT_VARIANTS
    assert package_literals('mini_clip', lab)['CLIP_KINDS'] \
        == mini_clip.CLIP_KINDS
    assert package_literals('world', lab)['WorldSettings.root'] \
        == world.WorldSettings().root


def test_prepare_leaves_unset_world_settings_to_their_defaults():
    tool = sys.modules[
        tool_main('projects/mini_world/tools/prepare.py').__module__]
    args = tool.parse_args(['--seed', '3', '--defect-rates', '0', '0.6'])
    assert vars(args) == dict(seed=3, defect_rates=[0.0, 0.6],
                              rebuild=False, clip_config=None,
                              clip_checkpoint=None, no_progress=False)


def test_cfg_options_parse_as_with_mmengine_dict_action():
    from mmengine.config import DictAction
    argv = ['--cfg-options', 'a.b=1', 'c=[1,2]', 'd=x,y', "e=(1,'s')",
            '--cfg-options', 'f=True']
    plain = argparse.ArgumentParser()
    plain.add_argument('--cfg-options', nargs='+', action=DictAction)
    # What tools/train.py uses: the parser loaded without the package.
    parser = light_module('cli.launch_args').train_arg_parser()
    assert parser.parse_args(['c.py', *argv]).cfg_options == \
        plain.parse_args(argv).cfg_options
