"""Match a dataset's gene identifiers to concept databases and prepare them for annotation."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.data.genes import detect_gene_ids, symbol_case
from core.concepts.db import ConceptDB, GeneMatch, concat
from core.concepts.go import load_gene_table

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

    Raises InputError, naming the database, if one matches none of the data's genes (with both
    identifier types and examples), if a gene-set file has no set of ``min_size``–``max_size`` of
    the data's genes, or if no concept at all is left.
    """
    gene_names = pd.Index([str(g) for g in gene_names])
    out, matches = [], []
    for db in dbs:
        cols, m = match_genes(db, gene_names, id_type=id_type)
        if m.n_matched == 0:
            raise _no_match(db, gene_names, id_type=m.id_type)
        restricted = db.restrict(cols, gene_names)
        kept = restricted.filter_size(min_size=min_size, max_size=max_size)
        if kept.n_terms == 0 and db.file is not None:
            raise _no_set_in_range(restricted, m, min_size=min_size, max_size=max_size)
        matches.append(m)
        out.append(kept)
    merged = concat(out)  # InputError for no database
    best = max(matches, key=lambda m: m.n_matched)
    merged.match = best
    if merged.n_terms == 0:
        raise InputError(f"no concept has {min_size}–{max_size} of the data's genes ({best.describe()})",
                         fix="lower the minimum term size (e.g. --min-term-size 5) or use more genes")
    return merged


def _examples(names, n: int = 3) -> str:
    return ", ".join(str(g) for g in list(names)[:n])


def _no_match(db: ConceptDB, gene_names: pd.Index, *, id_type: str) -> InputError:
    """The error for a database none of whose genes is among the data's: what each side's IDs look like."""
    data = replace(detect_gene_ids(gene_names), kind=id_type)
    data_says = (f"the data's identifiers look like {data.label}" if data.kind != "unknown"
                 else "the data's identifiers are not recognised") + f" (e.g. {_examples(gene_names)})"
    data_case = symbol_case(gene_names) if data.kind == "symbol" else "mixed"
    if db.file is None:  # the shipped GO: human genes, reached through symbols, aliases, Ensembl or Entrez IDs
        if data_case == "capitalised":
            data_says += ", capitalised like mouse genes (Cd3e), while the shipped GO is human (CD3E)"
        return InputError(
            f"none of the {len(gene_names):,} genes matches a concept in {db.name} ({len(db.genes):,} human genes, "
            f"e.g. {_examples(db.genes)}); {data_says}",
            fix="use human gene symbols, Ensembl or Entrez IDs as var_names, or leave GO out and supply a "
                "gene-set file (GMT) with your identifiers")
    theirs = detect_gene_ids(db.genes)
    msg = (f"gene-set file {db.file} matches none of the data's {len(gene_names):,} genes: its {len(db.genes):,} "
           f"genes look like {theirs.label} (e.g. {_examples(db.genes)}); {data_says}")
    if theirs.kind == data.kind == "symbol":
        cases = symbol_case(db.genes), data_case
        if cases == ("capitalised", "upper"):
            msg += "; the file's symbols are capitalised like mouse genes (Cd3e), the data's are upper-case " \
                   "like human genes (CD3E)"
        elif cases == ("upper", "capitalised"):
            msg += "; the file's symbols are upper-case like human genes (CD3E), the data's are capitalised " \
                   "like mouse genes (Cd3e)"
    want = data.label if data.kind != "unknown" else "the data's identifiers"
    return InputError(msg, fix=f"use a gene-set file of the data's species with {want}, or convert the file's "
                               f"identifiers to {want} (e.g. with BioMart or mygene)")


def _no_set_in_range(restricted: ConceptDB, m: GeneMatch, *, min_size: int, max_size: int) -> InputError:
    """The error for a gene-set file whose sets all fall outside the size range after restriction."""
    sizes = restricted.sizes
    lo, hi = int(sizes.min()), int(sizes.max())
    below, above = sizes[sizes < min_size], sizes[sizes > max_size]
    fixes = []
    if below.size:
        fixes.append(f"lower the minimum term size to {max(1, int(below.max()))} (--min-term-size)")
    if above.size:
        fixes.append(f"raise the maximum term size to {int(above.min())} (--max-term-size)")
    return InputError(
        f"gene-set file {restricted.file}: none of its {restricted.n_terms:,} gene sets has {min_size}–{max_size} of "
        f"the data's genes ({m.n_matched:,} of the data's genes are in the file; its sets hold {lo}–{hi} of them)",
        fix=" or ".join(fixes) + ", or use a gene-set file with sets of that size")
