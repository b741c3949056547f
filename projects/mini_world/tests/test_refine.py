"""What SynC did to a mini world's defective pairs (mini_world.refine)."""
import json

from projects.mini_world.pcm_mini_world.refine import (
    defect_outcomes,
    refined_annotation,
)


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_defect_outcomes_count_each_fate(tmp_path):
    # images 1, 2, 3 defective; 4, 5, 6 clean; 7 clean, drawn for the
    # same caption as 6.
    captions = {'1': 'a', '2': 'b', '3': 'c', '4': 'd', '5': 'e', '6': 'f',
                '7': 'f'}
    world = dict(root=str(tmp_path), annotations=dict(train='train.json'),
                 images=dict(synth_d030='images/synth_d030'))
    write(tmp_path / 'train.json', dict(data_list=[
        dict(image_id=i, caption=c) for i, c in captions.items()]))
    write(tmp_path / 'images' / 'synth_d030' / 'defects.json', {
        i: (dict(type='missing') if i in '123' else None) for i in captions})
    refined = tmp_path / 'refined.json'
    moves = {'1': '4', '2': '3', '3': '3', '4': '4', '6': '7', '7': '1'}
    write(refined, dict(data_list=[
        dict(image_id=new, caption=captions[old], source_image_id=old)
        for old, new in moves.items()]))  # 5 dropped
    out = defect_outcomes(world, 0.3, str(refined))
    assert out['defective'] == dict(kept_own=1, pairs=3, to_clean=1,
                                    to_defective=1, to_same_caption=0)
    assert out['clean'] == dict(dropped=1, kept_own=1, pairs=4, to_clean=1,
                                to_defective=1, to_same_caption=1)
    assert refined_annotation(world, 0.3) == str(
        tmp_path / 'refined' / 'synth_d030' / 'train.json')
