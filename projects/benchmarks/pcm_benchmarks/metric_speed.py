"""The registered caption metric against bare pycocoevalcap scorers: the
same scores, timed side by side.

The bare side is what ``COCOEvalCap.evaluate()`` runs, SPICE left out: a
``PTBTokenizer`` call for the references and another for the predictions,
then ``Bleu(4)``, ``Meteor()``, ``Rouge()`` and ``Cider()`` one after
another, each scorer built as COCOEvalCap builds them (all up front).
"""
import os
import os.path as osp
import resource
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from pcm_plugin.evaluation.caption_metric import (
    DEFAULT_SCORERS,
    PAPER_SCALE,
    SCORER_KEYS,
    check_scorers,
)
from pcm_plugin.evaluation.coco_gt import load_coco_gt

# The real COCO subset inside the data folder the caller names (4,800 val2014
# images with their 24,019 human captions, in COCO's annotation format).
COCO_SUBSET = osp.join('coco-val2014-captions',
                       'captions_val2014_subset.json')
PREDICTIONS = ("each image's first caption (lowest annotation id); its "
               'other captions are the references')
# Smoke runs check the plumbing quickly: they leave out METEOR, whose JVM
# start-up alone outlasts the other scorers, whatever the number of images.
SMOKE_IMAGES = 50
SMOKE_SCORERS = ('bleu', 'rouge', 'cider')


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
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
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
    import pcm_plugin.evaluation  # noqa: F401  (registers the metric)
    from pcm_plugin.registry import METRICS
    metric = METRICS.build(dict(type='COCOCaptionMetric',
                                references=dict(references),
                                scorers=tuple(scorers)))
    metric.process(None, [dict(image_id=i, pred_caption=c)
                          for i, c in predictions.items()])
    return metric.evaluate(len(predictions))


def children_cpu_s() -> float:
    """CPU seconds of this process and of its ended children (the JVMs)."""
    own = time.process_time()
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + done.ru_utime + done.ru_stime


def compare_with_pycocoevalcap(
        predictions: Mapping[int, str],
        references: Mapping[int, Sequence[str]], *,
        scorers: Sequence[str] = DEFAULT_SCORERS, reps: int = 5,
        warmup: int = 1) -> Dict:
    """Time the registered metric against the bare scorers, interleaved,
    and check that every run of both gives exactly the same scores.

    Args:
        predictions (Mapping[int, str]): Image id to predicted caption.
        references (Mapping[int, Sequence[str]]): Image id to references.
        scorers (Sequence[str]): Scorer names. Defaults to
            ('bleu', 'meteor', 'rouge', 'cider').
        reps (int): Timed runs of each.
        warmup (int): Untimed runs of each first.

    Returns:
        dict: ``images``, ``references``, ``scorers``, ``scores`` (of the
        bare scorers, times ``metric_scale``: rows written before it have
        pycocoevalcap's own), ``identical`` (every run of both equal, to the
        bit), ``times`` (median/IQR wall seconds and median CPU seconds,
        JVMs included, of ``'pycocoevalcap'`` and ``'metric'``),
        ``metric_over_pycocoevalcap`` (ratio of the medians, wall and
        CPU) and the 1-minute load average before and after.
    """
    import numpy as np

    from projects.benchmarks.pcm_benchmarks.perf import timed_interleaved
    candidates = dict(pycocoevalcap=pycocoevalcap_sequential,
                      metric=registered_metric)
    results: Dict[str, List[Dict[str, float]]] = {n: [] for n in candidates}
    cpu: Dict[str, List[float]] = {n: [] for n in candidates}

    def recorded(name: str, fn: Callable) -> Callable[[], None]:
        def run():
            start = children_cpu_s()
            results[name].append(fn(predictions, references, scorers))
            cpu[name].append(children_cpu_s() - start)
        return run

    load_before = os.getloadavg()[0]
    times = timed_interleaved(
        {name: recorded(name, fn) for name, fn in candidates.items()},
        warmup=warmup, reps=reps)
    for name, t in times.items():
        t['cpu_s'] = float(np.median(cpu[name][warmup:]))
    first = results['pycocoevalcap'][0]
    return dict(
        images=len(predictions),
        references=sum(len(references[i]) for i in predictions),
        scorers=list(check_scorers(scorers)), scores=first,
        metric_scale=PAPER_SCALE,
        identical=all(r == first for runs in results.values() for r in runs),
        times=times,
        metric_over_pycocoevalcap=dict(
            wall=times['metric']['median_s'] / times['pycocoevalcap'][
                'median_s'],
            cpu=times['metric']['cpu_s'] / times['pycocoevalcap']['cpu_s']),
        load_before=load_before, load_after=os.getloadavg()[0])


def evaluation_row(shared_data: Optional[str], *, smoke: bool = False,
                   reps: int = 5) -> Dict:
    """The benchmark's "evaluation" row: :func:`compare_with_pycocoevalcap`
    on the real COCO subset, or why it was skipped.

    Args:
        shared_data (str, optional): The real data folder, holding
            :data:`COCO_SUBSET`; None or empty: the row is skipped.
        smoke (bool): :data:`SMOKE_IMAGES` images, :data:`SMOKE_SCORERS`,
            one run of each, no warm-up.
        reps (int): Timed runs of each (after one warm-up run).

    Returns:
        dict: The comparison plus ``predictions`` (what they are), or
        ``{'skipped': reason}`` without a folder or without the subset.
    """
    if not shared_data:
        return dict(skipped='no real data folder given (--shared-data DIR, '
                    f'a folder holding {COCO_SUBSET})')
    path = osp.join(shared_data, COCO_SUBSET)
    if not osp.isfile(path):
        return dict(skipped=f'{path} not found (--shared-data must name a '
                    f'folder holding {COCO_SUBSET})')
    predictions, references = load_coco_subset(
        shared_data, SMOKE_IMAGES if smoke else None)
    row = compare_with_pycocoevalcap(
        predictions, references,
        scorers=SMOKE_SCORERS if smoke else DEFAULT_SCORERS,
        reps=1 if smoke else reps, warmup=0 if smoke else 1)
    row['predictions'] = PREDICTIONS
    return row
