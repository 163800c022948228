"""Compare two annotated analyses (e.g. two models of the same cells) by their concepts (docs/method.md §5):
the reported rows of each annotation table (:func:`core.annotate.reported.reported`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from scipy.optimize import linear_sum_assignment

from core.annotate.reported import reported
from core.base.errors import InputError

__all__ = ["Comparison", "compare_annotations"]


@dataclass
class Comparison:
    matches: pd.DataFrame      # feature_a, feature_b, jaccard, shared_terms
    similarity: float          # mean Jaccard over the optimal one-to-one matching
    terms_a: int
    terms_b: int
    shared_terms: int
    spearman: float            # of per-term feature counts over the union of terms
    pearson: float

    def summary(self) -> dict:
        return {"similarity": self.similarity, "matched_pairs": int(len(self.matches)),
                "unique_terms_a": self.terms_a, "unique_terms_b": self.terms_b, "shared_terms": self.shared_terms,
                "term_overlap": self.shared_terms / max(1, self.terms_a + self.terms_b - self.shared_terms),
                "concept_count_spearman": self.spearman, "concept_count_pearson": self.pearson}


def _binary(ann: pd.DataFrame, terms: pd.Index) -> tuple[sp.csr_matrix, np.ndarray]:
    feats, f = np.unique(ann["feature"].to_numpy(), return_inverse=True)
    t = terms.get_indexer(ann["term_id"].astype(str))
    m = sp.csr_matrix((np.ones(len(ann)), (f, t)), shape=(feats.size, len(terms)))
    m.data[:] = 1.0
    return m, feats


def compare_annotations(a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Optimal bipartite matching of features by Jaccard similarity of their term sets, plus term overlap
    and the correlation of concept counts (how many features carry each term) between the two.
    ``a``, ``b``: annotation tables; only their reported rows count."""
    a, b = reported(a), reported(b)
    if a.empty or b.empty:
        raise InputError("both analyses need annotations to be compared", fix="run `featurelens annotate` on both")
    terms = pd.Index(sorted(set(a["term_id"].astype(str)) | set(b["term_id"].astype(str))))
    ma, fa = _binary(a, terms)
    mb, fb = _binary(b, terms)
    inter = (ma @ mb.T).toarray()
    size_a = np.asarray(ma.sum(1)).ravel()
    size_b = np.asarray(mb.sum(1)).ravel()
    jac = inter / (size_a[:, None] + size_b[None, :] - inter)
    rows, cols = linear_sum_assignment(jac, maximize=True)
    matches = pd.DataFrame({"feature_a": fa[rows], "feature_b": fb[cols], "jaccard": jac[rows, cols],
                            "shared_terms": inter[rows, cols].astype(int)})
    matches = matches.sort_values("jaccard", ascending=False, ignore_index=True)
    count_a = np.asarray(ma.sum(0)).ravel()
    count_b = np.asarray(mb.sum(0)).ravel()
    in_a, in_b = count_a > 0, count_b > 0
    rho = stats.spearmanr(count_a, count_b).statistic if terms.size > 2 else float("nan")
    r = stats.pearsonr(count_a, count_b).statistic if terms.size > 2 else float("nan")
    return Comparison(matches=matches, similarity=float(matches["jaccard"].mean()), terms_a=int(in_a.sum()),
                      terms_b=int(in_b.sum()), shared_terms=int((in_a & in_b).sum()), spearman=float(rho),
                      pearson=float(r))
