"""GMT gene-set files (MSigDB, Enrichr, Reactome): one set per line, ``name<TAB>description<TAB>genes…``."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError
from core.base.paths import user_path
from core.concepts.db import ConceptDB

__all__ = ["read_gmt"]


def read_gmt(path: str | os.PathLike, *, name: str | None = None) -> ConceptDB:
    """Read a GMT file; a malformed line is an InputError naming its line number."""
    path = user_path(path)
    if not path.is_file():
        raise InputError(f"gene-set file {path} does not exist")
    sets: list[tuple[str, str, list[str]]] = []
    seen: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path.name} is not a UTF-8 text file", fix="a GMT file is plain text") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n\r").split("\t")
        if len(parts) < 3:
            raise InputError(
                f"{path.name} line {lineno}: expected name<TAB>description<TAB>genes…, found {len(parts)} field(s)",
                fix="GMT fields are separated by tabs, not spaces",
            )
        set_name = parts[0].strip()
        genes = [g.strip() for g in parts[2:] if g.strip()]
        if not set_name:
            raise InputError(f"{path.name} line {lineno}: empty gene-set name")
        if not genes:
            raise InputError(f"{path.name} line {lineno}: gene set {set_name!r} has no genes")
        if set_name in seen:
            raise InputError(f"{path.name} line {lineno}: gene set {set_name!r} appears twice")
        seen.add(set_name)
        sets.append((set_name, parts[1].strip(), list(dict.fromkeys(genes))))
    if not sets:
        raise InputError(f"{path.name} holds no gene sets")
    genes = pd.Index(sorted({g for _, _, gs in sets for g in gs}))
    rows = np.repeat(np.arange(len(sets)), [len(gs) for _, _, gs in sets])
    cols = genes.get_indexer([g for _, _, gs in sets for g in gs])
    matrix = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(len(sets), len(genes)))
    db_name = name or path.stem
    terms = pd.DataFrame({"id": [s[0] for s in sets], "name": [s[1] or s[0] for s in sets],
                          "namespace": db_name, "source": db_name, "level1": [() for _ in sets]})
    return ConceptDB(matrix, terms, genes, db_name, file=path.name)
