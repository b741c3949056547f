"""The registered caption metric against bare pycocoevalcap scorers: the
same scores, timed side by side.

Both sides, and the real COCO subset's human-agreement split, are the
library's test references (:mod:`pcm_plugin.testing.caption_reference`);
this module times them.
"""
import os
import os.path as osp
import resource
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from pcm_plugin.evaluation.caption_metric import (
    DEFAULT_SCORERS,
    PAPER_SCALE,
    check_scorers,
)
from pcm_plugin.testing.caption_reference import (  # noqa: F401
    COCO_SUBSET,
    human_agreement_split,  # for the lab's tests, which import it from here
    load_coco_subset,
    pycocoevalcap_sequential,
    registered_metric,
)

PREDICTIONS = ("each image's first caption (lowest annotation id); its "
               'other captions are the references')
# Smoke runs check the plumbing quickly: they leave out METEOR, whose JVM
# start-up alone outlasts the other scorers, whatever the number of images.
SMOKE_IMAGES = 50
SMOKE_SCORERS = ('bleu', 'rouge', 'cider')


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
