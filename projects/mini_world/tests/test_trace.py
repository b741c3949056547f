"""The training trace's attribute-error count on hand-built captions."""
import pytest

from projects.mini_world.pcm_mini_world.scenes import (
    BACKGROUND_NOUN,
    BACKGROUND_PREP,
    Scene,
    SceneObject,
)
from projects.mini_world.pcm_mini_world.trace import (
    attribute_errors,
    backgrounds_named,
    content_recall,
    summarize_trace,
)


def _scene(*objects):
    return Scene(background='snow', objects=[
        SceneObject(shape=s, colour=c, size='large', cell=(1, 1), x=32.0,
                    y=32.0, radius=8.0) for s, c in objects])


def test_attribute_errors_count_words_absent_from_the_scene():
    scenes = [_scene(('star', 'red')), _scene(('circle', 'blue'),
                                              ('square', 'green'))]
    captions = ['a red star on the snow',           # all right
                'a blue circle left of a red square',  # red is wrong
                ]
    errors = attribute_errors(captions, scenes)
    # colours: red, blue, red -> 1 wrong of 3; shapes: 3 right.
    assert errors == {'colour': pytest.approx(1 / 3), 'shape': 0.0}
    # Plural shape words count as their shape.
    assert attribute_errors(['two stars'], [_scene(('heart', 'red'))]) == {
        'colour': 0.0, 'shape': 1.0}


def test_content_recall_on_hand_built_captions():
    scenes = [_scene(('star', 'red')),
              _scene(('circle', 'blue'), ('square', 'green'))]
    scenes[1].background = 'night'
    captions = ['a small red star on the snow',        # everything
                'two circles in the night sky above the grass']
    recall = content_recall(captions, scenes)
    assert recall == pytest.approx(dict(
        shape_recall=(1 + 1 / 2) / 2,       # square left out
        colour_recall=(1 + 0) / 2,          # no colour in the second
        background_recall=(1 + 1) / 2,      # "night sky" is night
        background_wrong=(0 + 1) / 2,       # grass is not the night
        spatial_share=(0 + 1) / 2,          # "above"
        size_share=(1 + 0) / 2))            # "small"


def test_every_background_phrase_names_its_own_background():
    for background in BACKGROUND_PREP:
        phrases = BACKGROUND_PREP[background] + BACKGROUND_NOUN[background]
        for phrase in phrases:
            assert backgrounds_named(f'a red star {phrase}') == {
                background}, phrase


def test_summarize_trace_one_line_per_epoch():
    rows = [dict(epoch=1, loss_real=2.0, CIDEr_append=0.5),
            dict(epoch=2, loss_real=1.5, CIDEr_append=1.25)]
    assert summarize_trace(rows).splitlines() == [
        '| epoch | loss_real | CIDEr_append |', '| --- | --- | --- |',
        '| 1 | 2.000 | 0.500 |', '| 2 | 1.500 | 1.250 |']


def test_bad_input_seed_noise_names_the_sweeps_last_checkpoint(
        tiny_world, tmp_path, capsys):
    # --epochs says which checkpoint a sweep's cells end on; a cell not
    # trained yet is named, with the fix.
    from tests import helpers
    settings, _, _ = tiny_world
    assert helpers.run_tool_main('projects/mini_world/tools/seed_noise.py', [
        '--root', settings.root, '--work-root', tmp_path, '--epochs', 3,
        '--variant', 'full', '--rate', 0.5, '--seeds', 1]) == 1
    err = capsys.readouterr().err
    assert 'full_synth_d050_s1/epoch_3.pth not found' in err
    assert 'projects/mini_world/tools/ablation.py' in err
