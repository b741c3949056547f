"""COCO caption metric: pycocoevalcap's scorers called directly.

mmpretrain's ``COCOCaption`` runs ``COCOEvalCap.evaluate()``, which always
runs SPICE, and SPICE downloads Stanford CoreNLP on first use: without a
network (as on many clusters' compute nodes) the whole evaluation fails.
This metric keeps the same ``process``/``compute_metrics`` split and output
keys but runs ``PTBTokenizer``, ``Bleu(4)``, METEOR 1.5, ``Rouge()`` and
CIDEr itself, with pycocoevalcap's numbers to the bit, reported ×100 as
papers report them (:data:`PAPER_SCALE`); SPICE is opt-in and checked for
its jars before anything runs.

All scorers need ``java`` on PATH (the PTB tokenizer, METEOR and SPICE are
jars). pycocoevalcap writes temporary files inside its own package
directory, so the environment must be writable. METEOR starts a JVM with a
2 GB heap per evaluation, and loading its tables is most of its time.

Same numbers, less waiting: references and predictions go through one PTB
tokenizer JVM; METEOR's JVM starts before the tokenizer and loads its
tables meanwhile; then METEOR (and SPICE) run in threads, their work being
in other processes, while BLEU, ROUGE-L and CIDEr run in the calling
thread. METEOR's JVM runs with the C1 JIT only and CIDEr with a faster
bit-identical ``compute_cider`` (:mod:`.meteor`, :mod:`.cider`; the timings
are in docs/benchmarks/speed.md).
"""
import os.path as osp
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

from mmengine.evaluator import BaseMetric
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import spice
from pycocoevalcap.spice.spice import Spice
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from pcm_plugin.registry import METRICS

from .cider import FastCider
from .coco_gt import References, check_references, load_coco_gt, to_image_id
from .meteor import MeteorProcess

# Output keys per scorer, in pycocoevalcap's order.
SCORER_KEYS = {
    'bleu': ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4'),
    'meteor': ('METEOR', ),
    'rouge': ('ROUGE_L', ),
    'cider': ('CIDEr', ),
    'spice': ('SPICE', ),
}
DEFAULT_SCORERS = ('bleu', 'meteor', 'rouge', 'cider')
# The scale on which papers report caption metrics (PCM-Net: CIDEr 103.8,
# BLEU-4 31.5): pycocoevalcap's numbers times 100. The metrics log this, so
# the runner's log, `tools/test.py --out`, release.json and the demo all
# show one number for one score.
PAPER_SCALE = 100
# Scorers whose work runs in a JVM: threads are enough to overlap them with
# the pure-Python ones.
JVM_SCORERS = ('meteor', 'spice')
SPICE_JARS = ('stanford-corenlp-3.6.0.jar',
              'stanford-corenlp-3.6.0-models.jar')
# Characters Java may treat as a line break: each caption must stay on one
# line or the tokenizer's output no longer lines up with its input.
LINE_BREAKS = str.maketrans({c: ' ' for c in '\n\r\x0b\x0c\x85\u2028\u2029'})


def check_scorers(scorers: Sequence[str]) -> Tuple[str, ...]:
    """Lower-case, validate and order scorer names as pycocoevalcap does."""
    if isinstance(scorers, str):
        scorers = (scorers, )
    names = {name.lower() for name in scorers}
    unknown = sorted(names - set(SCORER_KEYS))
    if unknown or not names:
        raise ValueError(f'unknown or no caption scorers {unknown}; choose '
                         f'from {list(SCORER_KEYS)}')
    return tuple(name for name in SCORER_KEYS if name in names)


def require_java() -> None:
    """Fail early, with the fix, when ``java`` is not on PATH."""
    if shutil.which('java') is None:
        raise RuntimeError(
            'caption metrics need `java` on PATH: pycocoevalcap runs the PTB '
            'tokenizer, METEOR and SPICE as jars. Install a JRE (e.g. '
            'apt-get install openjdk-17-jre-headless) and retry.')


def spice_lib_dir() -> str:
    """Directory where pycocoevalcap's SPICE looks for CoreNLP jars."""
    return osp.join(osp.dirname(osp.abspath(spice.__file__)), 'lib')


def check_spice_jars() -> None:
    """Raise before SPICE tries to download Stanford CoreNLP 3.6.0."""
    lib_dir = spice_lib_dir()
    missing = [j for j in SPICE_JARS if not osp.isfile(osp.join(lib_dir, j))]
    if missing:
        raise FileNotFoundError(
            f'SPICE needs Stanford CoreNLP 3.6.0; missing {missing} in '
            f'{lib_dir}. pycocoevalcap would download them from '
            'nlp.stanford.edu (stanford-corenlp-full-2015-12-09.zip), which '
            'fails offline. Copy both jars from that zip into the directory '
            'above, or set use_spice=False.')


def ptb_tokenize(
        captions: Mapping[Hashable, Sequence[str]]) -> Dict[Hashable, List]:
    """Tokenize with pycocoevalcap's PTBTokenizer in one JVM call.

    Args:
        captions (Mapping): Any hashable key to a list of captions.

    Returns:
        dict: Same keys; lower-cased, tokenized captions without
        punctuation, joined by single spaces.
    """
    require_java()
    wrapped = {
        key: [{'caption': c.translate(LINE_BREAKS)} for c in caps]
        for key, caps in captions.items()
    }
    try:
        tokenized = PTBTokenizer().tokenize(wrapped)
    except PermissionError as err:
        raise PermissionError(
            f'{err}. pycocoevalcap writes temporary files inside its package '
            'directory; install it in a writable environment.') from None
    if any(len(tokenized.get(k, ())) != len(v) for k, v in wrapped.items()):
        raise RuntimeError('the PTB tokenizer returned a different number of '
                           'lines than captions; is java working?')
    return tokenized


def run_scorer(name: str, gts: Dict, res: Dict,
               meteor: Optional[MeteorProcess] = None) -> List[float]:
    """Corpus-level score(s) of one scorer, in ``SCORER_KEYS`` order.

    Args:
        name (str): One of :data:`SCORER_KEYS`.
        gts (dict): Image id to its tokenized references.
        res (dict): Image id to a list of its one tokenized prediction.
        meteor (MeteorProcess, optional): A started METEOR JVM; without
            one, METEOR starts (and stops) its own.

    Returns:
        list: The scorer's corpus score(s), as pycocoevalcap returns them.
    """
    if name == 'bleu':
        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
        return list(scores)
    if name == 'meteor':
        if meteor is None:
            with MeteorProcess() as own:
                return [own.score(gts, res)]
        return [meteor.score(gts, res)]
    if name == 'rouge':
        return [Rouge().compute_score(gts, res)[0]]
    if name == 'cider':
        # FastCider: pycocoevalcap's numbers, less CPU.
        return [FastCider().compute_score(gts, res)[0]]
    check_spice_jars()
    return [Spice().compute_score(gts, res)[0]]


def run_scorers(scorers: Sequence[str], gts: Dict, res: Dict,
                meteor: Optional[MeteorProcess]) -> Dict[str, List[float]]:
    """Every scorer: the JVM ones in threads, the others meanwhile here.

    The first failure is raised as soon as this thread sees it; METEOR's
    JVM is then killed, so that its thread ends instead of running on.

    Args:
        scorers (Sequence[str]): Checked scorer names.
        gts (dict): Image id to its tokenized references.
        res (dict): Image id to a list of its one tokenized prediction.
        meteor (MeteorProcess, optional): The started METEOR JVM, when
            ``'meteor'`` is among ``scorers``.

    Returns:
        dict: Scorer name to its score(s), in the order of ``scorers``.
    """
    background = [name for name in scorers if name in JVM_SCORERS]
    with ThreadPoolExecutor(max_workers=max(len(background), 1),
                            thread_name_prefix='caption-scorer') as pool:
        futures = {name: pool.submit(run_scorer, name, gts, res, meteor)
                   for name in background}
        try:
            values = {name: run_scorer(name, gts, res)
                      for name in scorers if name not in futures}
            values.update(
                (name, future.result()) for name, future in futures.items())
        except BaseException:
            if meteor is not None:
                meteor.kill()  # the pool's exit waits for METEOR's thread
            raise
    return {name: values[name] for name in scorers}


def score_captions(
        predictions: Mapping[int, str],
        references: Mapping[int, Sequence[str]],
        scorers: Sequence[str] = DEFAULT_SCORERS, *,
        scale: float = PAPER_SCALE) -> Dict[str, float]:
    """Score one caption per image against its references.

    Only the predicted images are scored (as mmpretrain's metric does); the
    IDF of CIDEr therefore comes from their references.

    Args:
        predictions (Mapping[int, str]): Image id to predicted caption.
        references (Mapping[int, Sequence[str]]): Image id to reference
            captions; must cover every predicted id.
        scorers (Sequence[str]): Any of ``'bleu'``, ``'meteor'``,
            ``'rouge'``, ``'cider'``, ``'spice'``.
            Defaults to ('bleu', 'meteor', 'rouge', 'cider').
        scale (float): Factor on pycocoevalcap's numbers. Defaults to
            :data:`PAPER_SCALE` (100, as papers report them); 1 gives
            pycocoevalcap's own.

    Returns:
        dict: ``Bleu_1..Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``,
        ``SPICE`` (those requested) as floats: pycocoevalcap's scores
        times ``scale``.
    """
    scorers = check_scorers(scorers)
    if not predictions:
        raise ValueError('no predictions to score: did the model set '
                         '`pred_caption` and did the dataloader yield data?')
    preds = {to_image_id(k, where='predictions'): v
             for k, v in predictions.items()}
    bad = [k for k, v in preds.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f'predictions of images {bad[:5]} are not strings')
    refs = check_references(references, where='references')
    check_covered(preds, refs, source='the references')
    require_java()
    if 'spice' in scorers:
        check_spice_jars()

    image_ids = sorted(preds)
    # METEOR's JVM loads its tables while the tokenizer's JVM runs.
    with (MeteorProcess() if 'meteor' in scorers else nullcontext()) as meteor:
        tokenized = ptb_tokenize({
            **{('ref', i): refs[i] for i in image_ids},
            **{('pred', i): [preds[i]] for i in image_ids}
        })
        gts = {i: tokenized[('ref', i)] for i in image_ids}
        res = {i: tokenized[('pred', i)] for i in image_ids}
        values = run_scorers(scorers, gts, res, meteor)
    metrics = {}
    for name in scorers:
        metrics.update(zip(SCORER_KEYS[name],
                           (float(v) * scale for v in values[name])))
    return metrics


def check_covered(preds: Mapping[int, str], refs: References, *,
                  source: str) -> None:
    """Every predicted image needs at least one reference caption."""
    missing = [i for i in preds if not refs.get(i)]
    if missing:
        raise ValueError(
            f'{len(missing)} predicted image ids have no reference caption in '
            f'{source}, e.g. {missing[:5]}. Does the gt file belong to this '
            'split, and are the image ids the same (int) ids?')


@METRICS.register_module()
class COCOCaptionMetric(BaseMetric):
    """BLEU-1..4 / METEOR / ROUGE-L / CIDEr (+ opt-in SPICE) for captions.

    Mirrors mmpretrain's ``COCOCaption`` (``process`` keeps ``pred_caption``
    and ``int(image_id)``; ``compute_metrics`` de-duplicates by image id,
    first prediction wins, and scores only the predicted images), but runs
    the pycocoevalcap scorers itself, METEOR beside the others, so that it
    works offline (see :func:`score_captions`).

    The scores are pycocoevalcap's times ``scale``: ×100 by default, the
    scale papers report (PCM-Net's CIDEr 103.8 is pycocoevalcap's 1.038),
    so that the log, ``tools/test.py --out`` and a release's scores read
    as the paper's tables. ``save_best`` and ``rule`` compare values of one
    run, which the scale does not reorder.

    Args:
        ann_file (str, optional): COCO-format caption gt JSON. Give this or
            ``references``.
        references (dict, optional): In-memory ``{image_id: [caption, ...]}``
            instead of ``ann_file``.
        scorers (Sequence[str]): Scorers to run, from ``'bleu'``,
            ``'meteor'``, ``'rouge'``, ``'cider'``, ``'spice'``.
            Defaults to ('bleu', 'meteor', 'rouge', 'cider').
        use_spice (bool): Add SPICE. Needs the Stanford CoreNLP 3.6.0 jars
            in pycocoevalcap's ``spice/lib`` (checked here, not downloaded).
            Defaults to False.
        collect_device (str): Device for gathering results across ranks.
            Defaults to 'cpu'.
        prefix (str, optional): Prefix of the output keys. Defaults to None
            (keys as in mmpretrain, e.g. ``'CIDEr'``).
        scale (float): Factor on pycocoevalcap's scores. Defaults to
            :data:`PAPER_SCALE` (100); 1 gives mmpretrain's ``COCOCaption``
            numbers.
    """
    default_prefix: Optional[str] = None

    def __init__(self,
                 *,
                 ann_file: Optional[str] = None,
                 references: Optional[Mapping[int, Sequence[str]]] = None,
                 scorers: Sequence[str] = DEFAULT_SCORERS,
                 use_spice: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 scale: float = PAPER_SCALE) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.scale = scale
        if (ann_file is None) == (references is None):
            raise ValueError('COCOCaptionMetric needs exactly one of '
                             'ann_file (COCO gt JSON) or references (dict)')
        if isinstance(scorers, str):
            scorers = (scorers, )
        self.scorers = check_scorers(
            tuple(scorers) + (('spice', ) if use_spice else ()))
        if 'spice' in self.scorers:
            check_spice_jars()
        require_java()
        self.source = ann_file if ann_file is not None else 'references'
        if ann_file is not None:
            self.references = load_coco_gt(ann_file)
        else:
            self.references = check_references(
                references, where='references')

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Keep ``pred_caption`` and ``int(image_id)`` of every sample.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples (Sequence): Model outputs: ``DataSample`` objects or
                dicts (mmengine's evaluator passes ``to_dict()`` results).
        """
        for sample in data_samples:
            caption = sample.get('pred_caption')
            if caption is None:
                raise KeyError(
                    'data sample has no `pred_caption`; the model\'s predict '
                    'mode must set it (mmpretrain captioner convention)')
            image_id = to_image_id(
                sample.get('image_id'), where='COCOCaptionMetric.process')
            self.results.append({'image_id': image_id, 'caption': caption})

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Score the de-duplicated predictions of all ranks.

        Args:
            results (List[dict]): What :meth:`process` stored, gathered.

        Returns:
            dict: Metric name to float (see :func:`score_captions`).
        """
        predictions = {}
        for result in results:
            predictions.setdefault(result['image_id'], result['caption'])
        check_covered(predictions, self.references, source=self.source)
        return score_captions(predictions, self.references, self.scorers,
                              scale=self.scale)
