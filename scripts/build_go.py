"""Build data/go_human.npz: human Gene Ontology gene sets (BP, MF, CC), offline, from Debian.

    apt-get download r-bioc-org.hs.eg.db r-bioc-go.db
    dpkg -x r-bioc-org.hs.eg.db_*.deb ex && dpkg -x r-bioc-go.db_*.deb ex
    python scripts/build_go.py --root ex/usr/lib/R/site-library      # or: make go-data

Without --root the script runs the two commands above itself in a temporary folder.
Both packages are Bioconductor 3.16 builds of GO release 2022-07-01 (org.Hs.eg.db: Entrez Gene
2022-09-12). Output arrays (one compressed .npz, no pickled objects):

- ``term_id``, ``term_name``, ``term_namespace`` (BP/MF/CC) for every non-obsolete GO term;
- ``edge_child``, ``edge_parent``, ``edge_type`` (is_a / part_of only; term indices);
- ``level1``: CSR (``level1_indptr``/``level1_indices``) term → level-1 ancestors (children of
  the namespace root reachable by is_a/part_of);
- ``gene_entrez``, ``gene_symbol``: the annotated genes (matrix columns);
- ``direct_*``: CSR terms × genes of direct annotations (all evidence codes, as the reference);
- ``prop_*``: the same propagated up is_a and part_of (not "regulates");
- ``alias_symbol``/``alias_gene`` and ``ensembl_id``/``ensembl_gene``: ID tables for matching
  (gene = column index, or -1 for genes without GO annotation, whose symbol is in
  ``other_symbol``/``other_entrez``).
"""
from __future__ import annotations

import argparse
import glob
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
NAMESPACES = ("BP", "MF", "CC")
ROOTS = {"BP": "GO:0008150", "MF": "GO:0003674", "CC": "GO:0005575"}
KEEP_REL = {"isa": "is_a", "part of": "part_of"}


def fetch(dest: Path) -> Path:
    subprocess.run(["apt-get", "download", "r-bioc-org.hs.eg.db", "r-bioc-go.db"], cwd=dest, check=True)
    for deb in glob.glob(str(dest / "*.deb")):
        subprocess.run(["dpkg", "-x", deb, str(dest / "ex")], check=True)
    return dest / "ex" / "usr" / "lib" / "R" / "site-library"


def ancestors_closure(n_terms: int, child: np.ndarray, parent: np.ndarray) -> sp.csr_matrix:
    """Boolean (n_terms, n_terms) matrix A with A[t, a] = 1 iff a is t or an ancestor of t."""
    step = sp.csr_matrix((np.ones(child.size, bool), (child, parent)), shape=(n_terms, n_terms))
    closure = (sp.identity(n_terms, dtype=bool, format="csr") + step).astype(bool)
    while True:
        nxt = (closure @ closure).astype(bool)
        if nxt.nnz == closure.nnz:
            return closure
        closure = nxt


def build(site: Path, out: Path) -> None:
    go = sqlite3.connect(site / "GO.db" / "extdata" / "GO.sqlite")
    org = sqlite3.connect(site / "org.Hs.eg.db" / "extdata" / "org.Hs.eg.sqlite")
    go_date = dict(go.execute("select name, value from metadata"))["GOSOURCEDATE"]

    rows = go.execute("select _id, go_id, term, ontology from go_term where ontology in ('BP','MF','CC') "
                      "order by go_id").fetchall()
    db_id = np.array([r[0] for r in rows])
    term_id = np.array([r[1] for r in rows])
    term_name = np.array([r[2] for r in rows])
    term_ns = np.array([r[3] for r in rows])
    index_of_db = {d: i for i, d in enumerate(db_id)}
    index_of_go = {g: i for i, g in enumerate(term_id)}

    child, parent, etype = [], [], []
    for ns in NAMESPACES:
        for c, p, rel in go.execute(f"select _id, _parent_id, relationship_type from go_{ns.lower()}_parents"):
            if rel in KEEP_REL and c in index_of_db and p in index_of_db:
                child.append(index_of_db[c])
                parent.append(index_of_db[p])
                etype.append(KEEP_REL[rel])
    child, parent = np.array(child), np.array(parent)
    anc = ancestors_closure(len(term_id), child, parent)

    roots = [index_of_go[ROOTS[ns]] for ns in NAMESPACES]
    level1_terms = np.unique(child[np.isin(parent, roots)])
    level1 = anc[:, level1_terms].tocsr()  # columns: the level-1 terms, in level1_terms order

    # genes: columns = genes with at least one GO annotation
    symbol = dict(org.execute("select _id, symbol from gene_info"))
    entrez = dict(org.execute("select _id, gene_id from genes"))
    pairs = []
    for ns in NAMESPACES:
        pairs += [(g, t) for g, t in org.execute(f"select distinct _id, go_id from go_{ns.lower()}")]
    genes = sorted({g for g, t in pairs if t in index_of_go}, key=lambda g: int(entrez[g]))
    col_of = {g: j for j, g in enumerate(genes)}
    r = np.array([index_of_go[t] for g, t in pairs if t in index_of_go])
    c = np.array([col_of[g] for g, t in pairs if t in index_of_go])
    direct = sp.csr_matrix((np.ones(r.size, bool), (r, c)), shape=(len(term_id), len(genes)))
    direct.sum_duplicates()
    direct.data[:] = True
    prop = (anc.T.astype(np.int32) @ direct.astype(np.int32)).astype(bool).tocsr()  # gene in t ⇒ in ancestors

    alias = org.execute("select _id, alias_symbol from alias").fetchall()
    ens = org.execute("select _id, ensembl_id from ensembl").fetchall()
    others = sorted(set(symbol) - set(col_of), key=lambda g: int(entrez[g]))
    other_code = {g: -2 - k for k, g in enumerate(others)}  # -2, -3, ...: genes without GO terms

    def code(g: int) -> int:
        return col_of.get(g, other_code.get(g))

    arrays = {
        "meta_go_date": np.array(go_date),
        "meta_source": np.array("Debian bookworm r-bioc-go.db 3.16.0-1, r-bioc-org.hs.eg.db 3.16.0-1"),
        "term_id": term_id.astype("U10"), "term_name": term_name.astype(str), "term_namespace": term_ns.astype("U2"),
        "edge_child": child.astype(np.int32), "edge_parent": parent.astype(np.int32),
        "edge_type": np.array(etype).astype("U7"),
        "level1_indptr": level1.indptr.astype(np.int32),
        "level1_indices": level1_terms[level1.indices].astype(np.int32),  # term indices
        "gene_entrez": np.array([int(entrez[g]) for g in genes], dtype=np.int64),
        "gene_symbol": np.array([symbol[g] for g in genes]).astype(str),
        "other_entrez": np.array([int(entrez[g]) for g in others], dtype=np.int64),
        "other_symbol": np.array([symbol[g] for g in others]).astype(str),
        "alias_symbol": np.array([a for g, a in alias]).astype(str),
        "alias_gene": np.array([code(g) for g, a in alias], dtype=np.int32),
        "ensembl_id": np.array([e for g, e in ens]).astype(str),
        "ensembl_gene": np.array([code(g) for g, e in ens], dtype=np.int32),
    }
    for name, m in (("direct", direct), ("prop", prop)):
        arrays[f"{name}_indptr"] = m.indptr.astype(np.int32)
        arrays[f"{name}_indices"] = m.indices.astype(np.int32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp.replace(out)
    print(f"GO {go_date}: {len(term_id)} terms, {len(genes)} annotated genes, "
          f"{direct.nnz} direct and {prop.nnz} propagated annotations -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, help="R site-library folder holding GO.db/ and org.Hs.eg.db/")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "go_human.npz")
    args = p.parse_args(argv)
    if args.root is None:
        with tempfile.TemporaryDirectory() as tmp:
            build(fetch(Path(tmp)), args.out)
    else:
        build(args.root, args.out)


if __name__ == "__main__":
    main()
