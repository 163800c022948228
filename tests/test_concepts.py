"""Concept databases: the shipped GO, GMT files, gene-ID matching, size filter."""
from __future__ import annotations

import numpy as np
import pytest

from core.concepts import load_go, read_gmt
from core.concepts.go import GO_FILE, load_gene_table, read_go_arrays
from core.concepts.match import match_genes, prepare_concepts
from core.base.errors import InputError


@pytest.fixture(scope="module")
def bp():
    return load_go(["BP"])


@pytest.fixture(scope="module")
def bp_direct():
    return load_go(["BP"], propagate=False)


def _genes(db, term_id):
    return set(db.genes_of(term_id))


def test_go_release_and_sizes(bp):
    a = read_go_arrays(GO_FILE)
    assert str(a["meta_go_date"]) == "2022-07-01"
    assert 25_000 < bp.n_terms < 30_000
    assert set(bp.terms["namespace"]) == {"BP"}
    assert 18_000 < len(bp.genes) < 22_000


def test_known_memberships(bp):
    assert {"HBB", "HBA1", "HBA2"} <= _genes(bp, "GO:0015671")  # oxygen transport
    assert "CD19" not in _genes(bp, "GO:0015671")
    name = bp.terms.set_index("id").loc["GO:0015671", "name"]
    assert name == "oxygen transport"


def test_propagation_follows_is_a_and_part_of(bp, bp_direct):
    a = read_go_arrays(GO_FILE)
    ids = a["term_id"]
    rows = {t: i for i, t in enumerate(bp.terms["id"])}
    m = bp.matrix
    rng = np.random.default_rng(0)
    edges = np.flatnonzero(np.isin(a["term_namespace"][a["edge_child"]], ["BP"]))
    for e in rng.choice(edges, 300, replace=False):
        c, p = rows[ids[a["edge_child"][e]]], rows[ids[a["edge_parent"][e]]]
        assert set(m[c].indices) <= set(m[p].indices)
    # direct ⊆ propagated, strictly fewer pairs
    assert (bp_direct.matrix.astype(int) - bp_direct.matrix.multiply(bp.matrix).astype(int)).nnz == 0
    assert bp_direct.matrix.nnz < bp.matrix.nnz / 3


def test_regulates_is_not_propagated(bp):
    # "regulation of T cell activation" regulates (is not a kind of) "T cell activation"
    reg, act = _genes(bp, "GO:0050863"), _genes(bp, "GO:0042110")
    assert len(reg - act) > 10


def test_level1_categories(bp):
    lvl = bp.terms.set_index("id")["level1"]
    assert "GO:0051179" in lvl["GO:0015671"]  # oxygen transport → localization
    assert lvl["GO:0008283"] == ("GO:0009987",)  # cell population proliferation → cellular process
    assert lvl["GO:0009987"] == ("GO:0009987",)  # a level-1 term is its own category
    assert all(isinstance(x, tuple) and all(type(i) is str for i in x) for x in lvl.head(100))


def test_gene_table_ids():
    t = load_gene_table()
    assert t.to_symbol("ENSG00000244734", "ensembl") == ("HBB", "ensembl")
    assert t.to_symbol("ENSG00000244734.4", "ensembl") == ("HBB", "ensembl")
    assert t.to_symbol("3043", "entrez") == ("HBB", "entrez")
    assert t.to_symbol("HBB", "symbol") == ("HBB", "symbol")
    assert t.to_symbol("NOT_A_GENE_XYZ", "symbol") == (None, None)


@pytest.mark.parametrize("names,id_type", [
    (["HBB", "HBA1", "CD19", "nonsense"], "symbol"),
    (["ENSG00000244734", "ENSG00000206172", "ENSG00000177455", "ENSG99999999999"], "ensembl"),
    (["3043", "3039", "930", "999999999"], "entrez"),
])
def test_match_genes_by_id_type(bp, names, id_type):
    cols, m = match_genes(bp, names, id_type=id_type)
    assert m.n_matched == 3 and cols[3] == -1
    assert [bp.genes[c] for c in cols[:3]] == ["HBB", "HBA1", "CD19"]
    assert m.by[id_type] == 3


def test_prepare_restricts_and_filters(bp):
    genes = list(bp.genes[:3000])
    db = prepare_concepts([bp], genes, min_size=10, max_size=500)
    assert list(db.genes) == genes
    assert db.sizes.min() >= 10 and db.sizes.max() <= 500
    # membership is preserved for the kept genes
    row = int(np.flatnonzero(db.sizes > 20)[0])
    term = db.terms["id"][row]
    assert set(db.genes_of(term)) == _genes(bp, term) & set(genes)


def test_prepare_no_match_names_the_id_type(bp):
    with pytest.raises(InputError, match="none of the 3 genes matches a concept in go-bp") as exc:
        prepare_concepts([bp], ["???1", "###2", "!!3"])
    assert "the data's identifiers are not recognised (e.g. ???1, ###2, !!3)" in exc.value.message
    assert "human gene symbols, Ensembl or Entrez IDs" in exc.value.fix
    with pytest.raises(InputError, match="capitalised like mouse genes") as exc:  # mouse data on the human GO
        prepare_concepts([bp], [f"Gene{i}" for i in range(40)])
    assert "20," in exc.value.message and "human genes" in exc.value.message


HUMAN = ["HBB", "HBA1", "HBA2", "CD19", "MS4A1", "CD79A", "ACTB"]


@pytest.mark.parametrize("genes,theirs,hint", [
    (["ENSG00000244734", "ENSG00000206172", "ENSG00000177455"], "Ensembl IDs (e.g. ENSG00000177455", None),
    (["Hbb-bs", "Hba-a1", "Cd19", "Ms4a1"], "gene symbols (e.g. Cd19, Hba-a1, Hbb-bs)",
     "the file's symbols are capitalised like mouse genes (Cd3e), the data's are upper-case like human genes"),
    (["9606", "9607", "9608"], "Entrez IDs (e.g. 9606, 9607, 9608)", None),
])
def test_gmt_matching_no_data_gene_is_an_error_naming_the_file(tmp_path, bp, genes, theirs, hint):
    """A GMT whose genes are none of the data's is refused even when GO matches (it used to be dropped)."""
    p = tmp_path / "other.gmt"
    p.write_text("SET_A\td\t" + "\t".join(genes[:2]) + "\nSET_B\td\t" + "\t".join(genes[2:]) + "\n")
    with pytest.raises(InputError) as exc:
        prepare_concepts([bp, read_gmt(p)], HUMAN, min_size=1)
    msg = exc.value.message
    assert msg.startswith(f"gene-set file other.gmt matches none of the data's 7 genes: its {len(genes)} genes look "
                          f"like {theirs}")
    assert "the data's identifiers look like gene symbols (e.g. HBB, HBA1, HBA2)" in msg
    assert (hint in msg) if hint else ("capitalised" not in msg)
    assert exc.value.fix == ("use a gene-set file of the data's species with gene symbols, or convert the file's "
                             "identifiers to gene symbols (e.g. with BioMart or mygene)")


def test_gmt_with_the_data_ids_matches_data_of_another_type(tmp_path):
    """Ensembl data and a symbol GMT: matched through the gene table, no error."""
    p = tmp_path / "sets.gmt"
    p.write_text("ERY\td\tHBB\tHBA1\n")
    db = prepare_concepts([read_gmt(p)], ["ENSG00000244734", "ENSG00000206172", "ENSG00000075624"], min_size=1)
    assert list(db.sizes) == [2] and db.match.by["ensembl"] == 2


@pytest.mark.parametrize("min_size,max_size,fix", [
    (3, 500, "lower the minimum term size to 2 (--min-term-size), or use"),
    (1, 1, None),  # set B (1 gene) is in range: no error
])
def test_gmt_with_no_set_in_the_size_range(tmp_path, bp, min_size, max_size, fix):
    p = tmp_path / "small.gmt"
    p.write_text("A\td\tHBB\tHBA1\tNOT_A_GENE\nB\td\tCD19\n")
    if fix is None:
        assert prepare_concepts([bp, read_gmt(p)], HUMAN, min_size=min_size, max_size=max_size).n_terms >= 1
        return
    with pytest.raises(InputError) as exc:
        prepare_concepts([bp, read_gmt(p)], HUMAN, min_size=min_size, max_size=max_size)
    assert exc.value.message == ("gene-set file small.gmt: none of its 2 gene sets has 3–500 of the data's genes "
                                 "(3 of the data's genes are in the file; its sets hold 1–2 of them)")
    assert exc.value.fix.startswith(fix)


def test_gmt_sets_too_large_suggest_a_larger_maximum(tmp_path):
    p = tmp_path / "big.gmt"
    p.write_text("A\td\t" + "\t".join(HUMAN) + "\n")
    with pytest.raises(InputError, match="has 1–5 of the data's genes") as exc:
        prepare_concepts([read_gmt(p)], HUMAN, min_size=1, max_size=5)
    assert exc.value.fix.startswith("raise the maximum term size to 7 (--max-term-size)")


def test_symbol_case_and_id_labels():
    from core.data.genes import detect_gene_ids, symbol_case

    assert symbol_case(["CD3E", "HBB", "MT-CO1", "CD19", "C1orf112"]) == "upper"
    assert symbol_case(["Cd3e", "Hbb-bs", "mt-Co1", "Ms4a1", "Cd19"]) == "capitalised"
    assert symbol_case(["CD3E", "Cd3e"]) == "mixed" and symbol_case(["123"]) == "mixed"
    assert [detect_gene_ids(n).label for n in (["HBB"], ["ENSG00000244734"], ["3043"], ["?"])] == [
        "gene symbols", "Ensembl IDs", "Entrez IDs", "unrecognised identifiers"]


def test_gmt_round_trip_and_matching(tmp_path, bp):
    p = tmp_path / "sets.gmt"
    p.write_text("# comment\nERY\tred cells\tHBB\tHBA1\tHBA2\n\nBCELL\thttp://x\tCD19\tMS4A1\tCD79A\n")
    db = read_gmt(p)
    assert list(db.terms["id"]) == ["ERY", "BCELL"] and list(db.sizes) == [3, 3]
    prepared = prepare_concepts([db], ["HBB", "CD19", "MS4A1", "CD79A", "ACTB"], min_size=1)
    assert list(prepared.sizes) == [1, 3]


@pytest.mark.parametrize("text,expected", [
    ("A\tdesc\tG1\nB desc G2 G3\n", "line 2: expected name<TAB>description<TAB>genes"),
    ("A\tdesc\tG1\nB\tdesc\t\t\n", "line 2: gene set 'B' has no genes"),
    ("A\tdesc\tG1\nA\tdesc\tG2\n", "line 2: gene set 'A' appears twice"),
    ("\n# only comments\n", "holds no gene sets"),
])
def test_gmt_malformed(tmp_path, text, expected):
    p = tmp_path / "bad.gmt"
    p.write_text(text)
    with pytest.raises(InputError, match=expected):
        read_gmt(p)
