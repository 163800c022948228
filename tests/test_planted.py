"""Planted-concept score: best-matching features, the 'top enriched terms' rule, and the demo's score."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.base.errors import InputError
from core.demo.data import GroundTruth
from core.demo.planted import best_matching_features, enriched_terms, score_planted


def test_best_matching_features_equal_numpy_pearson(rng):
    acts = rng.gamma(1.0, 1.0, size=(300, 12)) * (rng.random((300, 12)) < 0.3)
    acts[:, 5] = 0.0                                           # a dead feature is never chosen
    activity = rng.normal(size=(300, 4))
    activity[:, 1] = 3 * acts[:, 7] + 0.1 * rng.normal(size=300)
    best, r = best_matching_features(sp.csr_matrix(acts), activity)
    full = np.corrcoef(np.c_[np.delete(acts, 5, axis=1), activity].T)[:11, 11:]
    feats = np.delete(np.arange(12), 5)
    np.testing.assert_array_equal(best, feats[np.argmax(full, axis=0)])
    np.testing.assert_allclose(r, full.max(axis=0), rtol=1e-10)
    assert best[1] == 7 and r[1] > 0.99
    with pytest.raises(InputError):
        best_matching_features(sp.csr_matrix(acts), activity[:10])


def _rows(feature, terms):
    """Annotation rows: (term_id, name, binom_p, mwu_p, mwu_z)."""
    return pd.DataFrame([{"feature": feature, "term_id": t, "term_name": n, "binom_p": bp, "mwu_p_two_sided": mp,
                          "mwu_z": z, "direction": "over"} for t, n, bp, mp, z in terms])


def test_enriched_terms_keep_up_terms_best_first():
    ann = pd.concat([_rows(0, [("A", "a", 1e-3, 0.5, 1.0), ("B", "b", 1e-9, 1e-4, -4.0),
                               ("C", "c", 1e-3, 1e-6, 5.0), ("D", "d", 1e-5, 0.2, 0.3)]),
                     _rows(1, [("E", "e", 1e-20, 1e-20, 9.0)])])
    e = enriched_terms(ann, 0)
    assert e["term_id"].tolist() == ["D", "C", "A"]            # B is down in the high cells; C beats A on MWU p
    assert enriched_terms(ann, 2).empty


def test_enriched_terms_are_the_reported_rows_by_headline_p():
    ann = _rows(0, [("A", "a", 1e-9, 0.5, 1.0), ("B", "b", 1e-9, 1e-4, -4.0), ("C", "c", 1e-3, 1e-6, 5.0),
                    ("D", "d", 1e-5, 0.2, 0.3), ("E", "e", 1e-2, 1e-8, 2.0)])
    ann["hyper_p"] = [1e-3, 1e-12, 1e-6, 1e-4, 1e-6]
    ann["reported"] = [True, False, True, False, True]     # B: down genes; D: explained by a descendant
    e = enriched_terms(ann, 0)
    assert e["term_id"].tolist() == ["E", "C", "A"]         # hyper_p, ties by MWU p; not binom_p, no z filter
    assert "_p" not in e and e.index.tolist() == [0, 1, 2]
    assert enriched_terms(ann.assign(reported=False), 0).empty


def _truth(gene_names, terms, activity):
    programs = pd.DataFrame({"key": [f"p{i}" for i in range(len(terms))], "term_id": [t for t, _ in terms],
                             "term_name": [n for _, n in terms], "scope": "local", "cell_types": "x"})
    return GroundTruth(programs=programs, activity=activity, connectivity=np.zeros((len(gene_names), len(terms))),
                       cell_type_activity=pd.DataFrame(), gene_names=pd.Index(gene_names))


def test_score_rule_top_and_near_identical_relatives(rng):
    from core.concepts import load_go

    go = load_go(("BP",))
    ids = go.terms["id"].tolist()

    def genes(t):
        return list(go.genes[go.matrix[ids.index(t)].indices])

    heme, porph, o2 = "GO:0006783", "GO:0006779", "GO:0015671"      # porphyrin biosynthesis ⊃ heme biosynthesis
    only_porph = sorted(set(genes(porph)) - set(genes(heme)))
    assert len(only_porph) >= 2
    # in the data, porphyrin biosynthesis has one gene more than heme biosynthesis: Jaccard 25/26 ≥ 0.9
    names = sorted((set(genes(heme) + genes(o2) + only_porph[:1]) | set(go.genes[:200])) - set(only_porph[1:]))
    n = 400
    activity = rng.gamma(2.0, 1.0, size=(n, 2))
    acts = np.zeros((n, 3))
    acts[:, 0], acts[:, 2] = activity[:, 0], activity[:, 1]        # feature 0 ~ heme, feature 2 ~ oxygen
    acts[:, 1] = rng.random(n)
    filler = [(f"GO:{i:07d}", f"t{i}", 1e-12 * (i + 1), 1e-3, 2.0) for i in range(1, 12)]
    ann = pd.concat([
        _rows(0, filler[:10] + [(porph, "porphyrin-containing compound biosynthetic process", 0.1, 1e-3, 3.0),
                                (heme, "heme biosynthetic process", 0.2, 1e-3, 3.0)]),
        _rows(2, filler[:1] + [(o2, "oxygen transport", 1e-6, 1e-3, 3.0)]),
    ])
    truth = _truth(names, [(heme, "heme biosynthetic process"), (o2, "oxygen transport")], activity)
    s = score_planted(sp.csr_matrix(acts), ann, truth, top=10)
    t = s.table.set_index("program")
    assert t.loc["p0", "best_feature"] == 0 and t.loc["p1", "best_feature"] == 2
    assert t.loc["p0", "rank"] == 12 and not t.loc["p0", "found"] and not t.loc["p0", "found_relative"]
    assert t.loc["p1", "rank"] == 2 and t.loc["p1", "found"]
    assert s.fraction == 0.5 and s.n_found == 1

    s12 = score_planted(sp.csr_matrix(acts), ann, truth, top=11)   # porphyrin (rank 11) is a near-identical relative
    t12 = s12.table.set_index("program")
    assert not t12.loc["p0", "found"] and t12.loc["p0", "found_relative"]
    assert t12.loc["p0", "relative_term"] == porph
    assert s12.fraction == 0.5 and s12.fraction_with_relatives == 1.0
    assert score_planted(sp.csr_matrix(acts), ann, truth, top=12).fraction == 1.0
    d = s12.to_dict()
    assert d["score"] == 0.5 and len(d["programs"]) == 2 and d["top"] == 11
    assert "1/2" in s.lines()[0]
    with pytest.raises(InputError):
        score_planted(sp.csr_matrix(acts), ann, truth, top=0)


@pytest.mark.slow
def test_planted_score_of_the_default_demo(demo_analysis):
    """Issue 7 part 5: ≥ 0.8 of the planted GO programs are found with the demo's default settings."""
    from core.demo.planted import planted_concept_score

    score = planted_concept_score(demo_analysis)
    print("\n".join(score.lines()))
    assert score.n_programs >= 10
    assert score.fraction >= 0.8
    assert (score.table["correlation"] > 0.3).all()


@pytest.mark.slow
def test_trajectory_feature_along_the_erythroid_stages(demo_analysis):
    from core.store.analysis import Analysis
    from core.sae.characterise import find_trajectory_features
    from core.store.dataset import load_analysis_dataset
    from core.demo.data import ERYTHROID_STAGES

    a = Analysis.open(demo_analysis)
    cells = load_analysis_dataset(a).obs["cell_type"]
    traj = find_trajectory_features(a.read_npz_sparse("activations.npz"), cells, list(ERYTHROID_STAGES))
    assert len(traj) >= 1
    best = traj.iloc[0]
    stage_means = [best[f"mean[{t}]"] for t in ERYTHROID_STAGES]
    assert all(b > a_ for a_, b in zip(stage_means, stage_means[1:]))
    assert best["mean_lineage"] > best["mean_other"]
