"""pycocoevalcap's CIDEr, same numbers to the bit, for less CPU time.

``CiderScorer.compute_cider`` spends most of its time on NumPy scalar
arithmetic and on one ``np.log`` call per n-gram occurrence (about a
million on the 4,800-image COCO subset). :class:`FastCiderScorer` overrides
only that method: the same IEEE double operations in the same order, on
Python floats, with ``np.log`` called once per distinct document frequency
(the same call on the same argument). Everything else (n-gram counting,
document frequencies, the final mean) is pycocoevalcap's own code.

Why it is the same: NumPy float64 scalar ``+ - * /`` are IEEE double
operations, as Python's are; ``pow(x, 2)`` is the C library's ``pow`` for
both; ``sqrt`` is correctly rounded in both; the per-image mean over the
four n-gram orders stays ``np.mean`` (its summation order is NumPy's).
Checked to the bit on the real COCO subset and on hand-built edge cases
(tests/test_evaluation/test_cider.py).
"""
import math
from typing import Dict, List, Tuple

import numpy as np
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer

__all__ = ['FastCider', 'FastCiderScorer']

Vector = Tuple[List[Dict[tuple, float]], List[float], int]


class FastCiderScorer(CiderScorer):
    """``CiderScorer`` with a faster, bit-identical ``compute_cider``."""

    def compute_cider(self) -> List[float]:
        """Per-image CIDEr, as ``CiderScorer.compute_cider`` returns it.

        Returns:
            list: One score per image (NumPy floats), in input order.
        """
        self.ref_len = np.log(float(len(self.crefs)))
        weights: Dict[float, float] = {}
        penalties: Dict[float, float] = {}
        scores = []
        for test, refs in zip(self.ctest, self.crefs):
            vec, norm, length = self._vector(test, weights)
            score = [0.0] * self.n
            for ref in refs:
                vec_ref, norm_ref, length_ref = self._vector(ref, weights)
                delta = float(length - length_ref)
                if delta not in penalties:
                    penalties[delta] = np.e**(-(delta**2) /
                                              (2 * self.sigma**2))
                for k, value in enumerate(self._similarity(
                        vec, vec_ref, norm, norm_ref, penalties[delta])):
                    score[k] += value
            # np.mean, /= and *= as pycocoevalcap does them.
            score_avg = np.mean(np.array(score))
            score_avg /= len(refs)
            score_avg *= 10.0
            scores.append(score_avg)
        return scores

    def _vector(self, counts: Dict[tuple, int],
                weights: Dict[float, float]) -> Vector:
        """``counts2vec``: tf-idf per n-gram order, norms, and the length
        (pycocoevalcap counts bigrams there; kept)."""
        vec: List[Dict[tuple, float]] = [{} for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for ngram, term_freq in counts.items():
            df = self.document_frequency.get(ngram, 0.0)
            if df not in weights:
                weights[df] = float(
                    self.ref_len - np.log(max(1.0, df)))
            k = len(ngram) - 1
            value = float(term_freq) * weights[df]
            vec[k][ngram] = value
            norm[k] += pow(value, 2)
            if k == 1:
                length += term_freq
        return vec, [math.sqrt(x) for x in norm], length

    def _similarity(self, vec_hyp: List[Dict[tuple, float]],
                    vec_ref: List[Dict[tuple, float]], norm_hyp: List[float],
                    norm_ref: List[float], penalty: float) -> List[float]:
        """``sim``: clipped cosine per n-gram order, times the length
        penalty."""
        val = [0.0] * self.n
        for k in range(self.n):
            ref_k = vec_ref[k]
            for ngram, value in vec_hyp[k].items():
                ref_value = ref_k.get(ngram, 0.0)
                val[k] += min(value, ref_value) * ref_value
            if norm_hyp[k] != 0 and norm_ref[k] != 0:
                val[k] /= (norm_hyp[k] * norm_ref[k])
            assert not math.isnan(val[k])
            val[k] *= penalty
        return val


class FastCider(Cider):
    """``Cider`` computed by :class:`FastCiderScorer`."""

    def compute_score(self, gts: Dict, res: Dict) -> Tuple[float, object]:
        """Corpus and per-image CIDEr, as ``Cider.compute_score``.

        Args:
            gts (dict): Image id to its tokenized references.
            res (dict): Image id to a list of its one tokenized hypothesis.

        Returns:
            tuple: The corpus score and the array of per-image scores.
        """
        assert gts.keys() == res.keys()
        scorer = FastCiderScorer(n=self._n, sigma=self._sigma)
        for key in gts:
            hypo, ref = res[key], gts[key]
            assert type(hypo) is list and len(hypo) == 1
            assert type(ref) is list and len(ref) > 0
            scorer += (hypo[0], ref)
        return scorer.compute_score()
