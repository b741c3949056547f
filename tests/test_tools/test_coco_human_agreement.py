"""tools/analysis/coco_human_agreement.py: each image's first caption
scored against its others, printed and saved ×100 as papers report them."""
import json
import sys

from tests.helpers import tool_main


def test_scores_are_printed_and_saved_x100(tmp_path, monkeypatch, capsys):
    from pcm_plugin.evaluation.caption_metric import score_captions
    captions = {1: ['a dog runs on the grass', 'a dog running on grass',
                    'a brown dog on a lawn'],
                2: ['two cats on a sofa', 'two cats sleep on a couch'],
                3: ['a single caption']}  # one caption: skipped
    annotations = [dict(id=10 * i + k, image_id=i, caption=c)
                   for i, caps in captions.items()
                   for k, c in enumerate(caps)]
    ann_file, out = tmp_path / 'captions.json', tmp_path / 'scores.json'
    ann_file.write_text(json.dumps(dict(annotations=annotations)))
    monkeypatch.setattr(sys, 'argv', [
        'coco_human_agreement.py', '--ann-file', str(ann_file), '--scorers',
        'bleu', '--out', str(out)])
    tool_main('tools/analysis/coco_human_agreement.py')()
    split = ({1: captions[1][0], 2: captions[2][0]},
             {1: captions[1][1:], 2: captions[2][1:]})
    bare = score_captions(*split, 'bleu', scale=1)  # pycocoevalcap's own
    expected = {key: value * 100 for key, value in bare.items()}
    assert 0 < bare['Bleu_4'] < bare['Bleu_1'] <= 1
    report = json.loads(out.read_text())
    assert report['scores'] == expected
    assert report['skipped_single_caption_images'] == 1
    printed = capsys.readouterr().out
    assert f"Bleu_1   {expected['Bleu_1']:.2f}\n" in printed
