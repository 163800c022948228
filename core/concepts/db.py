"""The concept database data structure and its operations (restrict to data genes, size filter)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError

__all__ = ["ConceptDB", "GeneMatch", "concat"]


@dataclass(frozen=True)
class GeneMatch:
    """How the data's genes were matched to a database's genes."""

    n_data_genes: int
    n_matched: int
    id_type: str
    by: dict = field(default_factory=dict)  # how many matched by symbol / alias / ensembl / entrez
    unmatched_examples: tuple = ()

    @property
    def fraction(self) -> float:
        return self.n_matched / self.n_data_genes if self.n_data_genes else 0.0

    def describe(self) -> str:
        how = ", ".join(f"{v} by {k}" for k, v in self.by.items() if v)
        return f"{self.n_matched}/{self.n_data_genes} genes ({self.fraction:.0%}) matched ({how or 'none'})"


@dataclass
class ConceptDB:
    """Concepts × genes membership.

    ``matrix``: bool CSR (n_terms, n_genes). ``terms``: DataFrame with columns ``id``, ``name``,
    ``namespace``, ``source``, ``level1`` (tuple of level-1 ancestor ids), one row per term in
    matrix order. ``genes``: gene names of the columns (symbols for GO). ``file``: the name of the
    gene-set file it was read from (None for the shipped GO), for messages.
    """

    matrix: sp.csr_matrix
    terms: pd.DataFrame
    genes: pd.Index
    name: str = "concepts"
    match: GeneMatch | None = None
    file: str | None = None

    def __post_init__(self):
        if self.matrix.shape != (len(self.terms), len(self.genes)):
            raise ValueError(f"matrix {self.matrix.shape} does not fit {len(self.terms)} terms × {len(self.genes)} genes")

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def sizes(self) -> np.ndarray:
        """Genes per term, shape (n_terms,)."""
        return np.diff(self.matrix.indptr)

    def genes_of(self, term_id: str) -> list[str]:
        rows = np.flatnonzero(self.terms["id"].to_numpy() == term_id)
        if rows.size == 0:
            raise InputError(f"no term {term_id!r} in {self.name}")
        return list(self.genes[self.matrix[rows[0]].indices])

    def subset_terms(self, mask: np.ndarray) -> "ConceptDB":
        idx = np.flatnonzero(mask)
        return replace(self, matrix=self.matrix[idx], terms=self.terms.iloc[idx].reset_index(drop=True))

    def filter_size(self, *, min_size: int = 10, max_size: int = 500) -> "ConceptDB":
        """Keep terms with ``min_size ≤ size ≤ max_size`` genes (after restricting to the data's genes)."""
        s = self.sizes
        return self.subset_terms((s >= min_size) & (s <= max_size))

    def restrict(self, columns: np.ndarray, gene_names) -> "ConceptDB":
        """Re-index the columns onto the data's genes: ``columns[j]`` is the db column of data gene j, or -1."""
        columns = np.asarray(columns)
        ok = columns >= 0
        sel = sp.csr_matrix((np.ones(ok.sum(), bool), (columns[ok], np.flatnonzero(ok))),
                            shape=(self.matrix.shape[1], len(columns)))
        m = (self.matrix.astype(np.int32) @ sel.astype(np.int32)).astype(bool).tocsr()
        m.eliminate_zeros()
        return replace(self, matrix=m, genes=pd.Index(gene_names))


def concat(dbs: list[ConceptDB]) -> ConceptDB:
    """Stack databases that share the same gene columns (e.g. GO BP + a GMT, both restricted to the data)."""
    if not dbs:
        raise InputError("no concept databases selected", fix="choose at least one (e.g. go-bp)")
    genes = dbs[0].genes
    for d in dbs[1:]:
        if not d.genes.equals(genes):
            raise ValueError("concat needs databases restricted to the same genes")
    terms = pd.concat([d.terms for d in dbs], ignore_index=True)
    return ConceptDB(sp.vstack([d.matrix for d in dbs]).tocsr(), terms, genes, "+".join(d.name for d in dbs),
                     dbs[0].match)
