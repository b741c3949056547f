"""Human agreement on COCO captions: one human caption vs the others.

For every image, the caption with the lowest annotation id is the
"prediction" and the image's remaining captions are its references. The
scores are the usual ceiling reference for captioning metrics (humans reach
far less CIDEr than they "should"), and the run times the metric on a
realistic size. Scores are ×100, as papers report them.

Example::

    .venv/bin/python tools/analysis/coco_human_agreement.py \\
        --ann-file data/coco/annotations/captions_val2014.json \\
        --out work_dirs/coco_human_agreement.json
"""
import argparse
import json
import os.path as osp
import sys
import time
from typing import Dict, List, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a clone without installing
import tools._cli  # noqa: E402,F401  the tools' start-up


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--ann-file', required=True,
        help='COCO caption annotation JSON (e.g. captions_val2014.json)')
    parser.add_argument(
        '--scorers', nargs='+', default=['bleu', 'meteor', 'rouge', 'cider'],
        help='scorers to run (bleu meteor rouge cider [spice])')
    parser.add_argument('--out', help='optional JSON file for the results')
    return parser.parse_args()


def split_first_caption(
        ann_file: str) -> Tuple[Dict[int, str], Dict[int, List[str]], int]:
    """Lowest-id caption per image vs the image's other captions.

    Returns:
        tuple: predictions, references, number of images skipped because
        they have a single caption.
    """
    if not osp.isfile(ann_file):
        sys.exit(f'{ann_file} not found: pass --ann-file (a COCO caption '
                 'annotation JSON)')
    with open(ann_file, encoding='utf-8') as f:
        annotations = json.load(f)['annotations']
    by_image: Dict[int, List[dict]] = {}
    for ann in annotations:
        by_image.setdefault(int(ann['image_id']), []).append(ann)
    predictions, references, skipped = {}, {}, 0
    for image_id, anns in by_image.items():
        if len(anns) < 2:
            skipped += 1
            continue
        anns = sorted(anns, key=lambda ann: ann['id'])
        predictions[image_id] = anns[0]['caption']
        references[image_id] = [ann['caption'] for ann in anns[1:]]
    return predictions, references, skipped


def main() -> None:
    args = parse_args()
    from pcm_plugin.evaluation.caption_metric import score_captions

    start = time.perf_counter()
    predictions, references, skipped = split_first_caption(args.ann_file)
    num_refs = sum(len(r) for r in references.values())
    scoring_start = time.perf_counter()
    scores = score_captions(predictions, references, args.scorers)
    end = time.perf_counter()

    report = {
        'ann_file': osp.abspath(args.ann_file),
        'num_images': len(predictions),
        'num_references': num_refs,
        'skipped_single_caption_images': skipped,
        'scores': scores,
        'scoring_seconds': round(end - scoring_start, 2),
        'total_seconds': round(end - start, 2),
    }
    print(f'{len(predictions)} images, {num_refs} references '
          f'({skipped} single-caption images skipped)')
    for name, value in scores.items():
        print(f'{name:8s} {value:.2f}')
    print(f'scoring {report["scoring_seconds"]} s, '
          f'total {report["total_seconds"]} s (wall)')
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
