"""Per-term verdicts of a steering experiment against matched null draws (docs/method.md §6a).

    null = null_effects(scoring, rho=rho, base=base, directions=s_wdec, features=gs, n_directions=50, rng=rng)
    effect = effects_of(scoring, steered[None])[0]           # the feature's own, the same way
    table = judge_terms(effect, null, term_ids=ids, term_names=names, judged=[("up", "GO:0030218", "hypothesis")])

**Term effect** of one perturbation on a set of scoring cells: per gene, the mean over the cells of
log2((steered + c)/(normal + c)); per term, the mean over its genes minus the mean over all genes
(competitive, so a change of every gene does not count). **Null**: the same effect for K random
similar-frequency features and K random unit directions, each moving every scoring cell by the
feature's own norm ρᵢ. **p** (one-sided, in the term's direction) = (1 + #draws at least as
extreme) / (1 + K): exact when the feature acts like a draw (exchangeability), whatever the shape
of the null or the correlation between terms; the smallest p is 1/(K + 1). **q**: BH within each
family (the hypotheses: terms named by the user or reported for the feature by annotation; the
exploratory rest) and each kind of null. **Specific**: q < q_max against both kinds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.annotate.stats import bh
from core.model.decoders import decode_all

__all__ = ["Scoring", "NullEffects", "term_effects", "effects_of", "null_effects", "empirical_p", "judge_terms",
           "hypothesis_terms", "VERDICT_COLUMNS", "SPECIFIC", "NOT_ABOVE", "NO_CONTROLS", "HYPOTHESIS",
           "EXPLORATORY"]

SPECIFIC, NOT_ABOVE, NO_CONTROLS = "specific", "not above control", "no controls"
HYPOTHESIS, EXPLORATORY = "hypothesis", "exploratory"
VERDICT_COLUMNS = ["direction", "term_id", "term_name", "family", "effect", "null_feature_median",
                   "null_feature_max", "null_direction_median", "null_direction_max", "p_feature", "p_direction",
                   "q_feature", "q_direction", "score", "q", "verdict"]
_BATCH_ROWS = 8_192  # rows decoded per call: 0.44 GB of float32 at 13,431 genes


@dataclass(frozen=True)
class Scoring:
    """The cells the verdict statistic is computed on (a seeded subsample of the experiment's):
    ``normal`` (n_s, G) their normal expression; ``decoder``: the expression model's;
    ``library`` (n_s,) or None; ``covariates`` (n_s, c) or None; ``matrix`` (T, G) csr float64
    term membership; ``sizes`` (T,) genes per term; ``pseudocount``: c."""

    decoder: object
    normal: np.ndarray
    library: np.ndarray | None
    covariates: np.ndarray | None
    matrix: object
    sizes: np.ndarray
    pseudocount: float


@dataclass(frozen=True)
class NullEffects:
    """Term effects (K, T) of the random-feature draws (``features``: their ids) and of the random
    directions."""

    features: np.ndarray
    feature_effects: np.ndarray
    direction_effects: np.ndarray


def term_effects(lfc: np.ndarray, matrix, sizes: np.ndarray) -> np.ndarray:
    """Competitive term effects: ``lfc`` (r, G) per-gene mean log2 ratios -> (r, T), each term's
    mean over its genes minus the mean over all genes."""
    lfc = np.atleast_2d(np.asarray(lfc, np.float64))
    return np.asarray(matrix @ lfc.T).T / sizes - lfc.mean(axis=1, keepdims=True)


def effects_of(scoring: Scoring, afters: np.ndarray) -> np.ndarray:
    """Term effects (r, T) of r changed embeddings of the scoring cells, ``afters`` (r, n_s, d)."""
    r, n, d = afters.shape
    per = max(1, _BATCH_ROWS // max(1, n))
    c = scoring.pseudocount
    base = np.log2(scoring.normal.astype(np.float32) + np.float32(c))
    lfc = np.empty((r, scoring.normal.shape[1]))
    for k0 in range(0, r, per):
        k1 = min(r, k0 + per)
        lib = None if scoring.library is None else np.tile(scoring.library, k1 - k0)
        cov = None if scoring.covariates is None else np.tile(scoring.covariates, (k1 - k0, 1))
        s = decode_all(scoring.decoder, afters[k0:k1].reshape(-1, d), lib, cov).reshape(k1 - k0, n, -1)
        np.add(s, np.float32(c), out=s)
        np.log2(s, out=s)
        s -= base[None]
        lfc[k0:k1] = s.mean(axis=1, dtype=np.float64)
    return term_effects(lfc, scoring.matrix, scoring.sizes)


def null_effects(scoring: Scoring, *, rho: np.ndarray, base: np.ndarray, directions: np.ndarray,
                 features: np.ndarray, n_directions: int, rng: np.random.Generator) -> NullEffects:
    """Term effects of the null draws on the scoring cells: each of ``features`` raised along its
    direction (``directions`` (d, hidden), s·W_dec) and ``n_directions`` random unit directions,
    both moving cell i from ``base`` (n_s, d) by ``rho`` (n_s,), the feature's own change norm."""
    d = base.shape[1]
    feats = np.asarray(features, np.int64)
    v = directions[:, feats].T  # (Kf, d)
    unit_f = v / np.linalg.norm(v, axis=1, keepdims=True)
    w = rng.standard_normal((int(n_directions), d))
    unit_d = w / np.linalg.norm(w, axis=1, keepdims=True)

    def along(units: np.ndarray) -> np.ndarray:
        if not len(units):
            return np.zeros((0, scoring.matrix.shape[0]))
        afters = (base[None] + rho[None, :, None] * units[:, None, :]).astype(np.float32)
        return effects_of(scoring, afters)

    return NullEffects(features=feats, feature_effects=along(unit_f), direction_effects=along(unit_d))


def empirical_p(effect: np.ndarray, null: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """One-sided rank p per term: (1 + #{k: sign·null_k ≥ sign·effect}) / (1 + K); ``effect`` (m,),
    ``null`` (K, m), ``sign`` (m,) +1 for up, −1 for down. All ones when K = 0."""
    k = null.shape[0]
    return (1.0 + (sign * null >= sign * effect).sum(axis=0)) / (1.0 + k)


def hypothesis_terms(annotations: pd.DataFrame | None, feature: int, terms=()) -> list[tuple[str, str]]:
    """The family of hypotheses as (direction, term_id): ``terms`` if given (``GO:…`` = up,
    ``down:GO:…`` = down), else the feature's reported over-represented annotation terms, in the
    direction of the genes they were found in (up / down)."""
    if terms:
        out = []
        for t in terms:
            t = str(t).strip()
            low = t.lower()
            out.append(("down", t[5:]) if low.startswith("down:") else ("up", t[3:] if low.startswith("up:") else t))
        return list(dict.fromkeys(out))
    if annotations is None or not len(annotations) or "reported" not in annotations:
        return []
    a = annotations[(annotations["feature"] == feature) & annotations["reported"].astype(bool)]
    if "direction" in a:
        a = a[a["direction"].astype(str) == "over"]
    de_dir = a["de_direction"].astype(str) if "de_direction" in a else pd.Series("up", index=a.index)
    return list(dict.fromkeys(zip(de_dir.where(de_dir.isin(["up", "down"]), "up"), a["term_id"].astype(str))))


def _family_q(p_up: np.ndarray, p_down: np.ndarray, hyp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BH q (2, T) of every (direction, term) test: within the hypotheses ``hyp`` (2, T) bool, and
    within all the other tests together (the exploratory family is every other term, both
    directions, not only the enriched ones: choosing the family by the feature's own result
    would bias it)."""
    p = np.vstack([p_up, p_down])
    q = np.ones_like(p)
    for fam in (hyp, ~hyp):
        if fam.any():
            q[fam] = bh(p[fam])
    return q[0], q[1]


def judge_terms(effect: np.ndarray, null: NullEffects, *, term_ids: np.ndarray, term_names: np.ndarray,
                judged: list[tuple[str, str, str]], scores: pd.DataFrame | None = None,
                q_max: float = 0.05) -> pd.DataFrame:
    """The verdict table (:data:`VERDICT_COLUMNS`), one row per judged (direction, term_id, family).

    ``effect`` (T,) the feature's term effects; ``term_ids`` / ``term_names`` (T,) the concepts'
    terms; ``judged``: the hypotheses (family ``hypothesis``) and the exploratory terms to show;
    ``scores``: the reference run's enrichment score and q indexed by (direction, term_id) (shown
    beside the verdict). Terms the concepts lack are skipped. The ``null_*_max`` columns hold the
    most extreme draw in the term's direction."""
    where = {t: i for i, t in enumerate(np.asarray(term_ids).astype(str))}
    rows = [(dn, t, fam, where[t]) for dn, t, fam in judged if t in where]
    if not rows:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    df = pd.DataFrame(rows, columns=["direction", "term_id", "family", "col"])
    col = df["col"].to_numpy()
    down = (df["direction"] == "down").to_numpy()
    sign = np.where(down, -1.0, 1.0)
    hyp = np.zeros((2, effect.size), bool)
    hyp[down.astype(int)[df["family"].to_numpy() == HYPOTHESIS], col[df["family"].to_numpy() == HYPOTHESIS]] = True
    df["term_name"] = np.asarray(term_names).astype(str)[col]
    df["effect"] = effect[col]
    has_null = null.feature_effects.shape[0] > 0 and null.direction_effects.shape[0] > 0
    ones = np.ones(effect.size)
    for kind, nul in (("feature", null.feature_effects), ("direction", null.direction_effects)):
        sub = nul[:, col]
        df[f"null_{kind}_median"] = np.median(sub, axis=0) if len(sub) else np.nan
        df[f"null_{kind}_max"] = (sign * sub).max(axis=0) * sign if len(sub) else np.nan
        p_up, p_down = empirical_p(effect, nul, ones), empirical_p(effect, nul, -ones)
        q_up, q_down = _family_q(p_up, p_down, hyp)
        df[f"p_{kind}"] = np.where(down, p_down[col], p_up[col])
        df[f"q_{kind}"] = np.where(down, q_down[col], q_up[col])
    got = scores.reindex(pd.MultiIndex.from_arrays([df["direction"], df["term_id"]])) if scores is not None else None
    df["score"] = got["score"].fillna(0.0).to_numpy() if got is not None else 0.0
    df["q"] = got["q"].fillna(1.0).to_numpy() if got is not None else 1.0
    ok = (df["q_feature"].to_numpy() < q_max) & (df["q_direction"].to_numpy() < q_max)
    df["verdict"] = np.where(ok, SPECIFIC, NOT_ABOVE) if has_null else NO_CONTROLS
    df["_fam"] = (df["family"] != HYPOTHESIS).astype(int)
    df = df.sort_values(["_fam", "direction", "p_direction", "score"], ascending=[True, False, True, False],
                        kind="stable")
    return df[VERDICT_COLUMNS].reset_index(drop=True)
