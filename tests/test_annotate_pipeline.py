"""Annotation over an analysis folder: planted GO programs are found; CLI annotate/de/compare."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.store.analysis import Analysis
from core.annotate.pipeline import AnnotationConfig, annotate_analysis
from core.cli.main import main
from core.concepts import load_go
from core.data.load import load_dataset
from core.base.errors import InputError

PLANTED = {0: "GO:0015671", 1: "GO:0042113", 2: "GO:0006260"}  # oxygen transport, B cell activation, DNA replication


@pytest.fixture(scope="module")
def planted_analysis(tmp_path_factory):
    """Cells whose counts of a GO term's genes rise with a planted feature's activation."""
    rng = np.random.default_rng(7)
    bp = load_go(["BP"])
    term_genes = {f: bp.genes_of(t) for f, t in PLANTED.items()}
    planted = sorted({g for gs in term_genes.values() for g in gs})
    others = [g for g in bp.genes[:3000] if g not in set(planted)]
    genes = planted + others[: 1500 - len(planted)]
    n = 1500
    acts = np.zeros((n, 6), np.float32)
    for f in range(6):
        on = rng.random(n) < 0.15
        acts[on, f] = rng.gamma(2.0, 1.0, on.sum())
    base = rng.gamma(1.0, 1.0, len(genes)) + 0.1
    rate = np.tile(base, (n, 1))
    col = {g: j for j, g in enumerate(genes)}
    for f, gs in term_genes.items():
        idx = [col[g] for g in gs]
        rate[:, idx] *= (1.0 + 2.0 * acts[:, [f]])
    counts = rng.poisson(rate).astype(np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(["a", "b", "c"], n))}, index=[f"c{i}" for i in range(n)]),
        var=pd.DataFrame(index=genes), obsm={"X_emb": rng.normal(size=(n, 4)).astype(np.float32)})
    base_dir = tmp_path_factory.mktemp("annot")
    path = base_dir / "planted.h5ad"
    adata.write_h5ad(path)
    ds = load_dataset(path, embedding="X_emb")
    a = Analysis.create(base_dir / "an", dataset=ds.source, seed=3)
    with a.step("sae", inputs={"planted": True}) as w:
        w.write_npz_sparse("activations.npz", sp.csr_matrix(acts))
    return a


def test_planted_terms_are_top_hits(planted_analysis):
    a = planted_analysis
    summary = annotate_analysis(a, config=AnnotationConfig(concepts=("go-bp",), expression="observed"))
    ann = a.read_parquet("annotations.parquet")
    assert summary["features_tested"] == 6 and summary["expression"].startswith("observed")
    assert summary["method"] == "calibrated" and summary["null_features_tested"] > 0
    rep = ann[ann["reported"]]
    for f, term in PLANTED.items():
        top = rep[rep["feature"] == f].sort_values("hyper_p").iloc[0]
        assert top["term_id"] == term and top["de_direction"] == "up"
    assert set(rep["feature"]) == set(PLANTED)  # features 3-5 fire at random: nothing reported
    assert (ann.loc[ann["de_direction"] == "down", "reported"] == False).all()  # noqa: E712
    cmap = a.read_parquet("concept_map.parquet")
    assert set(cmap["feature"]) == set(rep["feature"]) and cmap["category"].notna().all()
    tech = a.read_parquet("confounders.parquet")
    assert len(tech) == 6 and {"library_size_r", "detected_genes_r", "tracks"} <= set(tech.columns)
    assert (tech.loc[3:5, "tracks"] == "").all() and summary["technical"]["cell_type_key"] == "cell_type"


def test_paper_method_keeps_the_papers_rule(planted_analysis):
    a = planted_analysis
    summary = annotate_analysis(a, config=AnnotationConfig(method="paper", concepts=("go-bp",),
                                                           expression="observed"), force=True)
    ann = a.read_parquet("annotations.parquet")
    assert summary["method"] == "paper" and ann["reported"].all() and (ann["de_direction"] == "pooled").all()
    for f, term in PLANTED.items():
        top = ann[ann["feature"] == f].sort_values("binom_p").iloc[0]
        assert top["term_id"] == term and top["direction"] == "over"
    kept = (ann["binom_p"] < 0.01) | (ann["mwu_p_two_sided"] < 0.01)
    assert kept.all()
    groups = a.read_parquet("annotation_groups.parquet")
    assert (groups["n_low"] <= 1000).all() and (groups.loc[groups["reason"] == "", "n_significant"] >= 0).all()


def test_annotation_is_cached_and_seeded(planted_analysis):
    a = planted_analysis
    cfg = AnnotationConfig(concepts=("go-bp",), expression="observed")
    annotate_analysis(a, config=cfg)
    stamp = a.config["steps"]["annotate"]["completed"]
    before = a.file("annotations.parquet").read_bytes()
    annotate_analysis(a, config=cfg)
    assert a.config["steps"]["annotate"]["completed"] == stamp
    assert a.file("annotations.parquet").read_bytes() == before


def test_cli_de_matches_annotation_groups(planted_analysis, tmp_path, capsys):
    a = planted_analysis
    out, cells = tmp_path / "de.csv", tmp_path / "cells.csv"
    annotate_analysis(a, config=AnnotationConfig(concepts=("go-bp",), expression="observed"))
    assert main(["de", str(a.path), "--feature", "0", "--out", str(out), "--cells", str(cells),
                 "--expression", "observed"]) == 0
    de = pd.read_csv(out)
    assert {"lfc", "tested", "direction", "detect_high"} <= set(de.columns)
    groups = a.read_parquet("annotation_groups.parquet").set_index("feature")
    assert de["significant"].sum() == groups.loc[0, "n_significant"] > 0
    assert (de["direction"] == "up").sum() == groups.loc[0, "n_up"]
    # the calibrated means are of log1p(counts × median library size / library size) of the recorded cells
    X = load_dataset(a.config["dataset"]["path"]).adata.X.toarray().astype(np.float64)
    lib = X.sum(1)
    L = np.log1p(X * (np.median(lib) / lib)[:, None])
    c = pd.read_csv(cells)
    hi = c.loc[c["group"] == "high", "cell_index"].to_numpy()
    np.testing.assert_allclose(de["mean_high"], L[hi].mean(0), rtol=1e-5, atol=1e-6)

    annotate_analysis(a, config=AnnotationConfig(method="paper", concepts=("go-bp",), expression="observed"))
    assert main(["de", str(a.path), "--feature", "0", "--out", str(out), "--cells", str(cells),
                 "--expression", "observed", "--method", "paper"]) == 0
    de = pd.read_csv(out)
    assert list(de.columns) == ["gene", "mean_high", "mean_low", "fold_change", "t", "p", "q", "significant"]
    groups = a.read_parquet("annotation_groups.parquet").set_index("feature")
    c = pd.read_csv(cells)
    assert (c["group"] == "high").sum() == groups.loc[0, "n_high"]
    assert (c["group"] == "low").sum() == groups.loc[0, "n_low"]
    assert de["significant"].sum() == groups.loc[0, "n_significant"]
    # recompute one gene by hand from the recorded cells
    from scipy import stats

    X = load_dataset(a.config["dataset"]["path"]).adata.X.toarray()
    g = int(np.argmax(de["significant"].to_numpy() * -np.log10(de["p"].to_numpy() + 1e-300)))
    hi = c.loc[c["group"] == "high", "cell_index"].to_numpy()
    lo = c.loc[c["group"] == "low", "cell_index"].to_numpy()
    ref = stats.ttest_ind(X[hi, g], X[lo, g], equal_var=False)
    assert de.loc[g, "p"] == pytest.approx(ref.pvalue, rel=1e-6)


def test_cli_annotate_and_compare(planted_analysis, capsys):
    a = planted_analysis
    assert main(["annotate", str(a.path), "--concepts", "go-bp", "--expression", "observed"]) == 0
    out = capsys.readouterr().out
    assert "features_annotated" in out and "technical check: live features that mostly track" in out
    assert main(["compare", str(a.path), str(a.path)]) == 0
    assert "similarity: 1.000" in capsys.readouterr().out


def test_bad_inputs(planted_analysis, tmp_path, capsys):
    a = planted_analysis
    assert main(["de", str(a.path), "--feature", "99", "--expression", "observed"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown concept database"):
        AnnotationConfig(concepts=("kegg",))
    with pytest.raises(InputError, match="no model decoder"):
        annotate_analysis(a, config=AnnotationConfig(expression="predicted"))
    empty = Analysis.create(tmp_path / "empty", dataset=a.config["dataset"])
    with pytest.raises(InputError, match="no SAE activations"):
        annotate_analysis(empty)


def test_observed_counts_are_a_memory_mapped_csc_copy_made_once(planted_analysis):
    """Annotating observed counts reads the .h5ad in chunks into observed_counts/ (core.data.counts):
    the same numbers as the file's matrix, memory-mapped, and made only once per dataset."""
    from core.annotate.expression import resolve_expression

    a = planted_analysis
    src = resolve_expression(a, mode="observed")
    want = ad.read_h5ad(a.config["dataset"]["path"]).X.toarray()
    assert src.matrix.format == "csc" and not src.matrix.data.flags.writeable
    np.testing.assert_array_equal(src.matrix.toarray(), want)
    assert a.has("observed_counts/counts_data.npy") and a.has("observed_counts/shape.json")
    stamp = a.config["steps"]["observed_counts"]["completed"]
    again = resolve_expression(a, mode="observed")
    assert a.config["steps"]["observed_counts"]["completed"] == stamp
    np.testing.assert_array_equal(again.matrix.indptr, src.matrix.indptr)


def test_paper_method_rows_are_the_engines_rows(planted_analysis):
    """`method="paper"` is the paper's pipeline unchanged: the same rows and numbers as the batched
    engine (batched_de → enrich) called directly, plus the three contract columns."""
    from core.annotate import batched_de, enrich, select_groups
    from core.annotate.enrich import COLUMNS
    from core.annotate.pipeline import annotate, load_concepts
    from core.annotate.expression import resolve_expression

    a = planted_analysis
    cfg = AnnotationConfig(method="paper", concepts=("go-bp",), expression="observed", n_null=0)
    expr = resolve_expression(a, mode="observed")
    concepts = load_concepts(cfg, expr.gene_names)
    acts = a.read_npz_sparse("activations.npz")
    res = annotate(acts, expr.matrix, expr.gene_names, concepts=concepts, seed=a.seed, config=cfg)
    groups = select_groups(acts, seed=a.seed)
    ref = pd.concat([enrich(batched_de(expr.matrix, b), concepts) for b in groups.blocks(256)], ignore_index=True)
    got = res.annotations
    assert list(got.columns) == COLUMNS + ["de_direction", "reported", "redundant_with"]
    pd.testing.assert_frame_equal(got[COLUMNS], ref[COLUMNS])
    assert res.method == "paper" and res.null == {}
