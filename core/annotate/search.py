"""Find features: by concept keyword, by gene, by cells (reverse lookup)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.annotate.reported import findable, headline_p
from core.sae.characterise import Z_CRIT
from core.base.errors import InputError

__all__ = ["ConceptIndex", "characteristic_features"]


class ConceptIndex:
    """Keyword search over an annotation table, built once per analysis.

    ``annotations``: rows feature × term with at least ``feature``, ``term_id``, ``term_name`` and a
    p-value (``hyper_p`` or ``binom_p``: :func:`~core.annotate.reported.headline_p`; else ``p``),
    which ranks matches. Only the findable rows are indexed: the reported ones and the ancestors
    they explain (``redundant_with``), so a search for a general term still finds the feature.
    """

    def __init__(self, annotations: pd.DataFrame):
        annotations = findable(annotations)
        if annotations.empty:
            self._feat = np.zeros(0, np.int64)
            self._term = np.zeros(0, np.int64)
            self._p = np.zeros(0)
            self.terms = pd.DataFrame({"term_id": [], "term_name": [], "haystack": []})
            return
        ids = annotations["term_id"].astype(str)
        codes, uniq = pd.factorize(ids)
        names = annotations.groupby(codes)["term_name"].first().reindex(range(len(uniq))).astype(str)
        self.terms = pd.DataFrame({"term_id": uniq, "term_name": names.to_numpy()})
        self.terms["haystack"] = (self.terms["term_id"] + " " + self.terms["term_name"]).str.lower()
        self._feat = annotations["feature"].to_numpy()
        self._term = codes
        self._p = self.rank_p(annotations)

    @staticmethod
    def rank_p(annotations: pd.DataFrame) -> np.ndarray:
        """The p-value that ranks each row, float (n_rows,): the headline p, else ``p``, else 1."""
        if "hyper_p" in annotations or "binom_p" in annotations:
            return headline_p(annotations).to_numpy(float)
        return annotations["p"].to_numpy(float) if "p" in annotations else np.ones(len(annotations))

    def matching_terms(self, query: str) -> np.ndarray:
        q = (query or "").strip().lower()
        if not q:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.terms["haystack"].str.contains(q, regex=False).to_numpy())

    def suggest(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Term names containing ``prefix`` (for the search box), most annotated first."""
        hits = self.matching_terms(prefix)
        if hits.size == 0:
            return []
        counts = np.bincount(self._term, minlength=len(self.terms))[hits]
        order = hits[np.argsort(-counts, kind="stable")][:limit]
        return self.terms["term_name"].iloc[order].tolist()

    def search(self, query: str, *, limit: int = 50) -> pd.DataFrame:
        """Features with ≥ 1 term whose id or name contains ``query`` (case-insensitive).

        Ranked by best p-value among matching terms, then by number of matching terms.
        Columns: feature, n_matching_terms, best_p, top_terms.
        """
        terms = self.matching_terms(query)
        cols = ["feature", "n_matching_terms", "best_p", "top_terms"]
        if terms.size == 0:
            return pd.DataFrame(columns=cols)
        rows = np.flatnonzero(np.isin(self._term, terms))
        df = pd.DataFrame({"feature": self._feat[rows], "p": self._p[rows], "term": self._term[rows]})
        df = df.sort_values("p", kind="stable")
        g = df.groupby("feature", sort=False)
        out = pd.DataFrame({"n_matching_terms": g.size(), "best_p": g["p"].first()})
        out = out.sort_values(["best_p", "n_matching_terms"], ascending=[True, False]).head(limit)
        names = self.terms["term_name"].to_numpy()
        top = df[df["feature"].isin(out.index)].groupby("feature", sort=False)["term"].apply(
            lambda t: "; ".join(names[t.to_numpy()[:3]]))
        out["top_terms"] = top.reindex(out.index).to_numpy()
        return out.rename_axis("feature").reset_index()[cols]


def characteristic_features(activations, cells, *, top: int = 20, min_cells: int = 2) -> pd.DataFrame:
    """Features most specific to a set of cells (reverse lookup of a lasso selection).

    ``cells``: bool mask or integer indices into the rows of ``activations`` (cells × features).
    For every feature: mean in the selection vs the rest and ``z = (mean_in − mean_out) /
    (SE_in + SE_out)``; ``significant`` uses the locality rule (z > 1.96). Returns the ``top``
    features by z with columns feature, mean_in, mean_out, z, significant.
    """
    A = activations if sp.issparse(activations) else sp.csr_matrix(np.asarray(activations))
    A = sp.csr_matrix(A, dtype=np.float64)
    n = A.shape[0]
    mask = np.zeros(n, bool)
    cells = np.asarray(cells)
    if cells.dtype == bool:
        if cells.size != n:
            raise InputError(f"selection mask has {cells.size} entries for {n} cells")
        mask = cells
    else:
        if cells.size and (cells.min() < 0 or cells.max() >= n):
            raise InputError("selection refers to cells that do not exist")
        mask[cells.astype(int)] = True
    k = int(mask.sum())
    if k < min_cells or n - k < min_cells:
        raise InputError(f"select at least {min_cells} cells (and leave {min_cells} unselected); {k} selected",
                         fix="draw a larger lasso in the latent view")
    groups = sp.csr_matrix((np.ones(n), (mask.astype(int), np.arange(n))), shape=(2, n))
    s1 = np.asarray((groups @ A).todense())
    s2 = np.asarray((groups @ A.multiply(A)).todense())
    cnt = np.array([[n - k], [k]], dtype=np.float64)
    mean = s1 / cnt
    var = np.maximum(s2 - s1 * mean, 0) / (cnt - 1)
    se = np.sqrt(var / cnt)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (mean[1] - mean[0]) / (se[1] + se[0])
    z = np.where(np.isfinite(z), z, np.where(mean[1] > mean[0], np.inf, 0.0))
    order = np.argsort(-z, kind="stable")[:top]
    return pd.DataFrame({"feature": order, "mean_in": mean[1, order], "mean_out": mean[0, order], "z": z[order],
                         "significant": z[order] > Z_CRIT})
