"""The shipped human Gene Ontology (data/go_human.npz, built by scripts/build_go.py)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError
from core.base.paths import SHIPPED_DATA_DIR
from core.concepts.db import ConceptDB

__all__ = ["GO_FILE", "load_go", "GeneTable", "load_gene_table", "NAMESPACES", "read_go_arrays"]

GO_FILE = SHIPPED_DATA_DIR / "go_human.npz"
NAMESPACES = {"go-bp": "BP", "go-mf": "MF", "go-cc": "CC"}


@functools.lru_cache(maxsize=2)
def read_go_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the shipped GO file (``scripts/build_go.py``), cached per path."""
    if not path.is_file():
        raise InputError(f"GO data file {path} is missing", fix="rebuild it with `make go-data` (scripts/build_go.py)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_go(namespaces=("BP",), *, propagate: bool = True, path: Path = GO_FILE) -> ConceptDB:
    """GO gene sets of ``namespaces`` (BP/MF/CC) as a ConceptDB over gene symbols.

    ``propagate=True``: a gene annotated to a term also belongs to all its is_a/part_of
    ancestors (not "regulates"). ``propagate=False``: direct annotations only, as the reference.
    """
    a = read_go_arrays(Path(path))
    namespaces = [NAMESPACES.get(str(n).lower(), str(n).upper()) for n in namespaces]
    bad = [n for n in namespaces if n not in ("BP", "MF", "CC")]
    if bad:
        raise InputError(f"unknown GO namespace {bad[0]!r}", fix="use BP, MF or CC (go-bp, go-mf, go-cc)")
    kind = "prop" if propagate else "direct"
    n_terms, n_genes = a["term_id"].size, a["gene_symbol"].size
    m = sp.csr_matrix((np.ones(a[f"{kind}_indices"].size, bool), a[f"{kind}_indices"], a[f"{kind}_indptr"]),
                      shape=(n_terms, n_genes))
    ptr, idx, ids = a["level1_indptr"], a["level1_indices"].tolist(), a["term_id"].tolist()
    level1 = [tuple(ids[j] for j in idx[ptr[i]:ptr[i + 1]]) for i in range(n_terms)]
    terms = pd.DataFrame({"id": ids, "name": a["term_name"].tolist(),
                          "namespace": a["term_namespace"].tolist(), "source": "GO " + str(a["meta_go_date"]),
                          "level1": level1})
    keep = np.flatnonzero(np.isin(a["term_namespace"], namespaces))
    name = "go-" + "+".join(n.lower() for n in namespaces) + ("" if propagate else "-direct")
    return ConceptDB(m[keep], terms.iloc[keep].reset_index(drop=True), pd.Index(a["gene_symbol"].tolist()),
                     name)


def term_names(path: Path = GO_FILE) -> dict[str, str]:
    """GO id → name for every term (for level-1 category labels)."""
    a = read_go_arrays(Path(path))
    return dict(zip(a["term_id"].tolist(), a["term_name"].tolist()))


@dataclass(frozen=True)
class GeneTable:
    """Human gene identifiers from org.Hs.eg.db: official symbols, aliases, Ensembl and Entrez IDs."""

    symbol_by_entrez: dict
    symbol_by_ensembl: dict
    symbol_by_alias: dict  # only aliases that name exactly one gene
    symbols: frozenset

    def to_symbol(self, name: str, id_type: str) -> tuple[str | None, str | None]:
        """(official symbol, how it was found) or (None, None)."""
        name = str(name).strip()
        if id_type == "ensembl":
            s = self.symbol_by_ensembl.get(name.split(".")[0])
            return (s, "ensembl") if s else (None, None)
        if id_type == "entrez":
            s = self.symbol_by_entrez.get(int(name)) if name.isdigit() else None
            return (s, "entrez") if s else (None, None)
        if name in self.symbols:
            return name, "symbol"
        s = self.symbol_by_alias.get(name) or self.symbol_by_alias.get(name.upper())
        return (s, "alias") if s else (None, None)


@functools.lru_cache(maxsize=1)
def load_gene_table(path: Path = GO_FILE) -> GeneTable:
    a = read_go_arrays(Path(path))
    sym = np.concatenate([a["gene_symbol"], a["other_symbol"]])

    def symbol_of(code: np.ndarray) -> np.ndarray:  # column j ≥ 0, or -2-k for the k-th other gene
        return np.where(code >= 0, sym[np.maximum(code, 0)], sym[a["gene_symbol"].size + np.maximum(-2 - code, 0)])

    alias_sym = symbol_of(a["alias_gene"])
    alias = pd.DataFrame({"alias": a["alias_symbol"], "symbol": alias_sym}).drop_duplicates()
    unique = alias.groupby("alias")["symbol"].transform("size") == 1
    alias = alias[unique & ~alias["alias"].isin(set(sym.tolist()))]
    entrez = dict(zip(np.concatenate([a["gene_entrez"], a["other_entrez"]]).tolist(), sym.tolist()))
    return GeneTable(symbol_by_entrez=entrez,
                     symbol_by_ensembl=dict(zip(a["ensembl_id"].tolist(), symbol_of(a["ensembl_gene"]).tolist())),
                     symbol_by_alias=dict(zip(alias["alias"], alias["symbol"])),
                     symbols=frozenset(sym.tolist()))
