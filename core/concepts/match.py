"""Match a dataset's gene identifiers to concept databases and prepare them for annotation."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..genes import detect_gene_ids
from .db import ConceptDB, GeneMatch, concat
from .go import load_gene_table

__all__ = ["match_genes", "prepare_concepts"]


def match_genes(db: ConceptDB, gene_names, *, id_type: str | None = None) -> tuple[np.ndarray, GeneMatch]:
    """Column of ``db`` for each data gene (-1 if none) and the match report.

    Data genes are mapped to official symbols through the org.Hs gene table (symbol, then an
    unambiguous alias; Ensembl and Entrez IDs via their tables), then looked up in ``db.genes``.
    A data gene that is literally a db gene name always matches (GMT files with own IDs).
    """
    names = [str(g) for g in gene_names]
    id_type = id_type or detect_gene_ids(names).kind
    table = load_gene_table()
    col_of = {g: j for j, g in enumerate(db.genes)}
    cols = np.full(len(names), -1, dtype=np.int64)
    by = {"symbol": 0, "alias": 0, "ensembl": 0, "entrez": 0, "exact name": 0}
    for i, n in enumerate(names):
        sym, how = table.to_symbol(n, id_type)
        if sym is not None and sym in col_of:
            cols[i], by[how] = col_of[sym], by[how] + 1
        elif n in col_of:
            cols[i], by["exact name"] = col_of[n], by["exact name"] + 1
    # two data genes (e.g. an alias and its symbol) must not share one column: keep the first
    _, first = np.unique(cols, return_index=True)
    dup = np.ones(len(cols), bool)
    dup[first] = False
    cols[dup & (cols >= 0)] = -1
    unmatched = tuple(n for n, c in zip(names, cols) if c < 0)[:5]
    return cols, GeneMatch(len(names), int((cols >= 0).sum()), id_type, by, unmatched)


def prepare_concepts(dbs: list[ConceptDB], gene_names, *, id_type: str | None = None,
                     min_size: int = 10, max_size: int = 500) -> ConceptDB:
    """Restrict every database to the data's genes, filter terms by size, stack them.

    Raises InputError if no data gene matches any concept (naming the ID type found).
    """
    gene_names = pd.Index([str(g) for g in gene_names])
    out, matches = [], []
    for db in dbs:
        cols, m = match_genes(db, gene_names, id_type=id_type)
        matches.append(m)
        out.append(db.restrict(cols, gene_names).filter_size(min_size=min_size, max_size=max_size))
    if all(m.n_matched == 0 for m in matches):
        m = matches[0]
        raise InputError(
            f"none of the {m.n_data_genes} genes matches a concept (identifiers look like {m.id_type}; "
            f"e.g. {', '.join(m.unmatched_examples[:3])})",
            fix="use human gene symbols, Ensembl or Entrez IDs as var_names, or supply a GMT file with your IDs",
        )
    best = max(matches, key=lambda m: m.n_matched)
    merged = concat(out)
    merged.match = best
    if merged.n_terms == 0:
        raise InputError(f"no concept has {min_size}–{max_size} of the data's genes ({best.describe()})",
                         fix="lower the minimum term size (e.g. --min-term-size 5) or use more genes")
    return merged
