"""The picture of re-paired examples (tools/refine_pairs.py --image-dir)."""
import json

from PIL import Image

from pcm_plugin.visualization.repairing_figure import (
    draw_repaired_examples,
    moved_examples,
)


def test_moved_examples_are_the_first_captions_that_changed_image():
    entries = [dict(image_id=i, source_image_id=s, caption=c)
               for i, s, c in (('1', '1', 'a'), ('3', '2', 'b'),
                               ('1', '3', 'c'), ('4', '4', 'd'))]
    assert [e['caption'] for e in moved_examples(entries, 5)] == ['b', 'c']
    assert [e['caption'] for e in moved_examples(entries, 1)] == ['b']


def test_draws_one_row_per_moved_caption_with_both_images(tmp_path):
    for k, colour in enumerate(('red', 'blue', 'green')):
        Image.new('RGB', (16, 16), colour).save(tmp_path / f'{k}.png')
    refined = tmp_path / 'train_sync.json'
    refined.write_text(json.dumps(dict(data_list=[
        dict(image_id='1', source_image_id='0', caption='a blue square',
             sync_score=1.0),
        dict(image_id='2', source_image_id='2', caption='kept', sync_score=1),
        dict(image_id='0', source_image_id='2', caption='a red one',
             sync_score=0.5)])))
    path = draw_repaired_examples(str(refined), image_dir=str(tmp_path))
    assert path == str(tmp_path / 'train_sync.examples.png')
    assert Image.open(path).size == (600, 2 * 320)  # 2 rows of 3.2 in
    nothing = tmp_path / 'none.json'
    nothing.write_text(json.dumps(dict(data_list=[
        dict(image_id='2', source_image_id='2', caption='kept')])))
    assert draw_repaired_examples(str(nothing),
                                  image_dir=str(tmp_path)) is None
