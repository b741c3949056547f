"""References for the caption metric: the bare pycocoevalcap scorers as
``COCOEvalCap.evaluate()`` runs them, the registered metric fed plain
predictions, and the human-agreement split of a COCO caption file.

The bare side is what ``COCOEvalCap.evaluate()`` runs, SPICE left out: a
``PTBTokenizer`` call for the references and another for the predictions,
then ``Bleu(4)``, ``Meteor()``, ``Rouge()`` and ``Cider()`` one after
another, each scorer built as COCOEvalCap builds them (all up front). The
metric's tests compare with it to the bit; the lab's benchmark times the
two side by side.
"""
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from pcm_plugin.evaluation.caption_metric import (
    DEFAULT_SCORERS,
    PAPER_SCALE,
    SCORER_KEYS,
    check_scorers,
)
from pcm_plugin.evaluation.coco_gt import load_coco_gt
from pcm_plugin.registry import METRICS

# The real COCO subset inside the data folder the caller names (4,800 val2014
# images with their 24,019 human captions, in COCO's annotation format).
COCO_SUBSET = osp.join('coco-val2014-captions',
                       'captions_val2014_subset.json')


def human_agreement_split(
        references: Mapping[int, Sequence[str]],
        limit: Optional[int] = None
) -> Tuple[Dict[int, str], Dict[int, List[str]]]:
    """Each image's first caption as the prediction, the others as its
    references (images with one caption are left out).

    Args:
        references (Mapping): Image id to its captions, e.g. from
            :func:`load_coco_gt` (file order: in the COCO subset, the
            lowest annotation id first).
        limit (int, optional): Keep the first ``limit`` image ids in
            ascending order. Defaults to all.

    Returns:
        tuple: ``(predictions, references)``.
    """
    ids = sorted(i for i, caps in references.items() if len(caps) > 1)
    ids = ids[:limit]
    return ({i: references[i][0] for i in ids},
            {i: list(references[i][1:]) for i in ids})


def load_coco_subset(shared_data: str, limit: Optional[int] = None
                     ) -> Tuple[Dict[int, str], Dict[int, List[str]]]:
    """:func:`human_agreement_split` of the real COCO subset.

    Args:
        shared_data (str): The real data folder, holding
            :data:`COCO_SUBSET`.
        limit (int, optional): Number of images. Defaults to all 4,800.

    Returns:
        tuple: ``(predictions, references)``.
    """
    return human_agreement_split(
        load_coco_gt(osp.join(shared_data, COCO_SUBSET)), limit)


def pycocoevalcap_sequential(
        predictions: Mapping[int, str],
        references: Mapping[int, Sequence[str]],
        scorers: Sequence[str] = DEFAULT_SCORERS, *,
        scale: float = PAPER_SCALE) -> Dict[str, float]:
    """The bare pycocoevalcap scorers, as ``COCOEvalCap.evaluate()``
    calls them (SPICE excepted), over the predicted images in ascending id
    order (the metric's order: ROUGE-L, CIDEr and METEOR average in it).

    Args:
        predictions (Mapping[int, str]): Image id to predicted caption.
        references (Mapping[int, Sequence[str]]): Image id to references.
        scorers (Sequence[str]): From ``'bleu'``, ``'meteor'``,
            ``'rouge'``, ``'cider'``.
        scale (float): Factor on their scores. Defaults to the metric's
            (:data:`PAPER_SCALE`), so that the two compare to the bit.

    Returns:
        dict: The metric's keys to the scores times ``scale``, as floats.
    """
    ids = sorted(predictions)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize(
        {i: [{'caption': c} for c in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{'caption': predictions[i]}] for i in ids})
    factories = dict(bleu=lambda: Bleu(4), meteor=Meteor, rouge=Rouge,
                     cider=Cider)
    built = [(name, factories[name]()) for name in check_scorers(scorers)]
    scores = {}
    for name, scorer in built:
        if name == 'bleu':  # COCOEvalCap also prints BLEU's counts
            score, _ = scorer.compute_score(gts, res, verbose=0)
        else:
            score, _ = scorer.compute_score(gts, res)
        values = score if isinstance(score, list) else [score]
        scores.update(zip(SCORER_KEYS[name],
                          (float(v) * scale for v in values)))
    return scores


def registered_metric(predictions: Mapping[int, str],
                      references: Mapping[int, Sequence[str]],
                      scorers: Sequence[str] = DEFAULT_SCORERS
                      ) -> Dict[str, float]:
    """The whole registered ``COCOCaptionMetric``: built from its config,
    fed the predictions as model outputs, evaluated.

    Args:
        predictions (Mapping[int, str]): Image id to predicted caption.
        references (Mapping[int, Sequence[str]]): Image id to references.
        scorers (Sequence[str]): Scorer names.

    Returns:
        dict: What ``evaluate`` returns.
    """
    metric = METRICS.build(dict(type='COCOCaptionMetric',
                                references=dict(references),
                                scorers=tuple(scorers)))
    metric.process(None, [dict(image_id=i, pred_caption=c)
                          for i, c in predictions.items()])
    return metric.evaluate(len(predictions))
