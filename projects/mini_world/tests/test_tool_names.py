"""The lab tools' parsers: the names they read without the lab's heavy
modules are the ones its code uses, and unset settings stay unset."""
import sys

from projects.mini_world.pcm_mini_world import (
    ablation,
    mini_clip,
    names,
    world,
)
from tests.helpers import tool_main


def test_the_lab_names_the_tools_read_are_the_ones_its_code_uses():
    """The lab tools build their parsers from ``names`` (standard library
    only); the modules that do the work must use the same objects."""
    assert ablation.VARIANTS is names.VARIANTS
    assert ablation.DEFAULT_VARIANTS is names.DEFAULT_VARIANTS
    assert mini_clip.CLIP_KINDS is names.CLIP_KINDS
    assert world.WorldSettings().root == names.DEFAULT_ROOT


def test_prepare_leaves_unset_world_settings_to_their_defaults():
    tool = sys.modules[
        tool_main('projects/mini_world/tools/prepare.py').__module__]
    args = tool.parse_args(['--seed', '3', '--defect-rates', '0', '0.6'])
    assert vars(args) == dict(seed=3, defect_rates=[0.0, 0.6],
                              rebuild=False, clip_config=None,
                              clip_checkpoint=None, no_progress=False)
