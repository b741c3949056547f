"""COCO caption metric: pycocoevalcap's scorers called one by one.

mmpretrain's ``COCOCaption`` runs ``COCOEvalCap.evaluate()``, which always
runs SPICE, and SPICE downloads Stanford CoreNLP on first use: offline it
fails (docs: openmmlab.md §1.6, stack.md §4). This metric keeps the same
``process``/``compute_metrics`` split and output keys but calls
``PTBTokenizer`` then ``Bleu(4)``, ``Meteor()``, ``Rouge()``, ``Cider()``
itself; SPICE is opt-in and checked for its jars before anything runs.

All scorers need ``java`` on PATH (the PTB tokenizer, METEOR and SPICE are
jars). pycocoevalcap writes temporary files inside its own package
directory, so the environment must be writable. METEOR starts a JVM with a
2 GB heap per evaluation (about 6 s).
"""
import os.path as osp
import shutil
import threading
from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

from mmengine.evaluator import BaseMetric

from pcm_plugin.registry import METRICS

from .coco_gt import References, check_references, load_coco_gt, to_image_id

# Output keys per scorer, in pycocoevalcap's order.
SCORER_KEYS = {
    'bleu': ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4'),
    'meteor': ('METEOR', ),
    'rouge': ('ROUGE_L', ),
    'cider': ('CIDEr', ),
    'spice': ('SPICE', ),
}
DEFAULT_SCORERS = ('bleu', 'meteor', 'rouge', 'cider')
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
    from pycocoevalcap.spice import spice
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
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
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


def meteor_score(gts: Dict, res: Dict) -> float:
    """Corpus METEOR; the JVM (2 GB heap) is always shut down afterwards."""
    from pycocoevalcap.meteor.meteor import Meteor
    meteor = Meteor()
    try:
        score, _ = meteor.compute_score(gts, res)
    except (ValueError, OSError) as err:
        meteor.meteor_p.kill()
        stderr = meteor.meteor_p.stderr.read().decode(errors='replace')
        raise RuntimeError(
            f'METEOR (java -jar meteor-1.5.jar) failed: {stderr[-2000:]}'
        ) from err
    finally:
        # Meteor.__del__ re-acquires a lock that a failed compute_score
        # still holds; a fresh lock keeps the shutdown from deadlocking.
        meteor.lock = threading.Lock()
        meteor.__del__()
    return score


def run_scorer(name: str, gts: Dict, res: Dict) -> List[float]:
    """Corpus-level score(s) of one scorer, in ``SCORER_KEYS`` order."""
    if name == 'bleu':
        from pycocoevalcap.bleu.bleu import Bleu
        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
        return list(scores)
    if name == 'meteor':
        return [meteor_score(gts, res)]
    if name == 'rouge':
        from pycocoevalcap.rouge.rouge import Rouge
        return [Rouge().compute_score(gts, res)[0]]
    if name == 'cider':
        from pycocoevalcap.cider.cider import Cider
        return [Cider().compute_score(gts, res)[0]]
    from pycocoevalcap.spice.spice import Spice
    check_spice_jars()
    return [Spice().compute_score(gts, res)[0]]


def score_captions(
        predictions: Mapping[int, str],
        references: Mapping[int, Sequence[str]],
        scorers: Sequence[str] = DEFAULT_SCORERS) -> Dict[str, float]:
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

    Returns:
        dict: ``Bleu_1..Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``,
        ``SPICE`` (those requested) as floats on pycocoevalcap's scale.
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
    tokenized = ptb_tokenize({
        **{('ref', i): refs[i] for i in image_ids},
        **{('pred', i): [preds[i]] for i in image_ids}
    })
    gts = {i: tokenized[('ref', i)] for i in image_ids}
    res = {i: tokenized[('pred', i)] for i in image_ids}
    metrics = {}
    for name in scorers:
        values = run_scorer(name, gts, res)
        metrics.update(zip(SCORER_KEYS[name], map(float, values)))
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
    the pycocoevalcap scorers one by one so that it works offline.

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
    """
    default_prefix: Optional[str] = None

    def __init__(self,
                 *,
                 ann_file: Optional[str] = None,
                 references: Optional[Mapping[int, Sequence[str]]] = None,
                 scorers: Sequence[str] = DEFAULT_SCORERS,
                 use_spice: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
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
        return score_captions(predictions, self.references, self.scorers)
