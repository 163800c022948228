"""The paper's four simulation experiments (§5, appendix A.1.3–A.1.6), as functions.

Each ``run_x(adata, *, config=XConfig(), seed, progress, should_stop)`` takes a simulated
AnnData (:func:`~core.simulate.simulate`) and returns a result with DataFrame tables
(``tables()``) and a JSON-able ``summary()``:

* :func:`run_superposition` — autoencoders of several depths/widths on the counts; R² of
  every variable from the latent by linear regression (fit on training cells, scored on
  validation cells).
* :func:`run_sae_sweep` — SAEs (architecture × expansion × lr × L1/k) on one reference
  autoencoder's latent; live, dead, redundant, L0, FVU, latents per variable, best Pearson.
* :func:`run_recovery` — best correlation of each variable with an SAE latent vs PCA, ICA,
  SVD and the raw latent axes.
* :func:`run_structure` — cosine(SAE latent, gene) → percentile thresholds → pseudo
  connectivity; binomial test of every feature × program against ``M``; best-matching
  ``X″`` per feature; fraction of ``M`` recovered.

``sweep``, ``recovery`` and ``structure`` train one reference autoencoder on the counts
unless an ``embedding`` is passed; ``structure`` reuses a recovery SAE's ``activations``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.sae import ReLUConfig, SAEConfig, TopKConfig, TrainConfig, VanillaConfig, encode_activations, sae_metrics
from core.sae import train_sae as _train_sae
from core.simulate.autoencoders import AEConfig, AEResult, encode_latent, train_autoencoder
from core.simulate.baselines import BASELINES, baseline_components
from core.simulate.generator import simulation_info
from core.simulate.metrics import ORDER, group_means, pearson_matrix, r2_scores, recovery_table, variable_matrix

__all__ = [
    "default_ae_config", "reference_embedding",
    "SuperpositionConfig", "SuperpositionResult", "run_superposition",
    "SweepConfig", "SweepResult", "run_sae_sweep",
    "RecoveryConfig", "RecoveryResult", "run_recovery",
    "StructureConfig", "StructureResult", "run_structure",
    "EXPERIMENTS", "run_experiments", "quick_configs", "PAPER", "PAPER_STYLE",
]

#: SAE settings of the paper's reference code: raw input (no centring or scaling), no
#: decoder-norm constraint, ``nn.Linear`` initialisation. On the small simulation they recover
#: X″ at r ≈ 0.99 where our good-practice defaults (centred input, unit decoder) reach ≈ 0.93:
#: without centring, the nonnegative programs stay rays from the origin that ReLU latents fit.
PAPER_STYLE = {"center": False, "scale": False, "decoder_norm": "none", "init": "torch"}

#: The paper's numbers that our report compares against (paper §5, v2 §4.3).
PAPER = {
    "recovery_r": 0.9,                       # "nearly perfectly recovered": Y and X″ (X for small)
    "structure_coverage": (0.75, 0.95),      # mean fraction of M recovered, 20th → 70th percentile
    "structure_percentiles": (20, 70),
    "superposition_order": ("Y", "X''", "A", "B", "X'", "X"),
}


# --------------------------------------------------------------------------- helpers
def _sub(progress: Progress, start: float, stop: float, total: float) -> Progress:
    """A progress callable mapping a sub-task's ``done/total`` into ``[start, stop]`` of ``total``."""
    def report(done: float, sub_total: float, message: str = "") -> None:
        frac = min(1.0, done / sub_total) if sub_total else 1.0
        progress(start + (stop - start) * frac, total, message)
    return report


def _check_stop(should_stop: ShouldStop) -> None:
    if should_stop():
        raise Cancelled("experiment cancelled")


def _validation_index(adata) -> np.ndarray | None:
    if "split" in adata.obs:
        idx = np.flatnonzero(np.asarray(adata.obs["split"] == "validation"))
        if 0 < idx.size < adata.n_obs - 10:
            return idx
    return None


def default_ae_config(adata) -> AEConfig:
    """The reference autoencoder for a simulation.

    small: one linear layer to a latent of as many units as generative variables (programs
    + the activity, at most the number of genes), raw counts (paper §5.2: "latent dimension equal to the number of
    generative variables"). large: one hidden layer, "wide" (256), latent = 2 × the number
    of programs, log1p counts of the 4,000 most variable genes (measured on a 4,000-cell
    simulation with 20 programs: R² of X″ from the latent 0.954, vs 0.875 with 1,000 genes
    and a latent of 20)."""
    info = simulation_info(adata)
    p = info["n_programs"]
    if info["kind"] == "small":
        return AEConfig(latent=min(p + 1, adata.n_vars), n_layers=0, transform="none", lr=1e-2, batch_size=64,
                        epochs=40, patience=5)
    return AEConfig(latent=2 * p, n_layers=1, width="wide", max_hidden=256, transform="log1p", max_genes=4000,
                    lr=2e-3, batch_size=128, epochs=60, patience=5)


def reference_embedding(adata, *, ae: AEConfig | None = None, seed: int, progress: Progress = no_progress,
                        should_stop: ShouldStop = never_stop) -> tuple[np.ndarray, AEResult]:
    """Train the reference autoencoder on the counts (validation = the simulation's
    ``split``) and return ``(latent (cells, latent) float32, AEResult)``."""
    config = ae or default_ae_config(adata)
    res = train_autoencoder(adata.X, config=config, seed=seed, val_index=_validation_index(adata),
                            progress=progress, should_stop=should_stop)
    _check_stop(should_stop)
    return encode_latent(res.model, adata.X), res


def _embedding_or_train(adata, embedding, ae, seed, progress, should_stop) -> tuple[np.ndarray, dict | None]:
    if embedding is not None:
        emb = np.asarray(embedding, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != adata.n_obs:
            raise InputError(f"the embedding must have one row per cell ({adata.n_obs}); got shape {emb.shape}")
        return emb, None
    emb, res = reference_embedding(adata, ae=ae, seed=seed, progress=progress, should_stop=should_stop)
    return emb, res.summary()


def _means(table: pd.DataFrame, column: str) -> dict[str, float]:
    m = group_means(table, column)
    return {str(r.variable): _f(getattr(r, column)) for r in m.itertuples()}


def _f(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise InputError(f"invalid experiment setting: {what}")


# --------------------------------------------------------------------------- (a) superposition
@dataclass(frozen=True)
class SuperpositionConfig:
    """Autoencoders ``latents × layers × widths`` (``None``: chosen for the simulation's
    kind, see :func:`superposition_grid`), each trained with ``ae``'s optimisation settings.
    ``y_genes``: genes of ``Y`` scored (seeded sample on large data)."""

    latents: tuple[int, ...] | None = None
    layers: tuple[int, ...] | None = None
    widths: tuple[str, ...] = ("narrow", "wide")
    ae: AEConfig | None = None
    y_genes: int = 1000

    def __post_init__(self) -> None:
        for name in ("latents", "layers", "widths"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
                _need(len(getattr(self, name)) > 0, f"{name} must not be empty")
        _need(self.y_genes >= 1, "y_genes must be positive")


def superposition_grid(adata, config: SuperpositionConfig) -> list[AEConfig]:
    """The autoencoders of a superposition experiment (small: latents 2–4, 0–2 layers;
    large: latents p/2, p, 2p (p programs), 1 or 3 layers)."""
    info = simulation_info(adata)
    p = info["n_programs"]
    base = config.ae or default_ae_config(adata)
    if info["kind"] == "small":
        latents = config.latents or (max(1, p - 1), p, p + 1)
        layers = config.layers or (0, 1, 2)
    else:
        latents = config.latents or tuple(sorted({max(2, p // 2), p, 2 * p}))
        layers = config.layers or (1, 3)
    out, seen = [], set()
    for z in sorted({min(int(z), adata.n_vars) for z in latents}):
        for L in layers:
            for w in (config.widths if L > 0 else ("narrow",)):
                cfg = base.replace(latent=int(z), n_layers=int(L), width=w)
                if cfg.name not in seen:
                    seen.add(cfg.name)
                    out.append(cfg)
    return out


@dataclass
class SuperpositionResult:
    """``models``: one row per autoencoder; ``r2``: one row per model × variable column."""

    models: pd.DataFrame
    r2: pd.DataFrame
    config: SuperpositionConfig

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"superposition_models": self.models, "superposition_r2": self.r2}

    def mean_r2(self) -> pd.DataFrame:
        """Mean R² per model and variable (models × variables)."""
        m = group_means(self.r2, "r2", by=["model"])
        wide = m.pivot(index="model", columns="variable", values="r2")
        return wide[[v for v in ORDER if v in wide.columns]].loc[self.models["model"]]

    def summary(self) -> dict[str, Any]:
        overall = _means(self.r2, "r2")
        wide = self.mean_r2()
        return {
            "n_models": len(self.models),
            "mean_r2": overall,
            "order": [v for v, _ in sorted(overall.items(), key=lambda kv: -(kv[1] if kv[1] is not None else -9))],
            "by_model": {m: {v: _f(x) for v, x in row.items()} for m, row in wide.iterrows()},
            "best_model": str(self.models.sort_values("best_val_loss")["model"].iloc[0]),
        }


def run_superposition(adata, *, config: SuperpositionConfig = SuperpositionConfig(), seed: int,
                      progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> SuperpositionResult:
    """Train each autoencoder of the grid on the counts, regress every variable on its latent
    (scikit-learn ``LinearRegression``, training cells) and score R² on validation cells."""
    from sklearn.linear_model import LinearRegression

    grid = superposition_grid(adata, config)
    variables = variable_matrix(adata, y_genes=config.y_genes, seed=seed)
    val = _validation_index(adata)
    if val is None:
        val = np.sort(np.random.default_rng(seed).permutation(adata.n_obs)[: max(10, adata.n_obs // 10)])
    train = np.setdiff1d(np.arange(adata.n_obs), val)
    rows, r2_rows = [], []
    for i, cfg in enumerate(grid):
        _check_stop(should_stop)
        sub = _sub(progress, i, i + 1, len(grid))
        res = train_autoencoder(adata.X, config=cfg, seed=seed, val_index=val, progress=sub, should_stop=should_stop)
        _check_stop(should_stop)
        z = encode_latent(res.model, adata.X).astype(np.float64)
        reg = LinearRegression().fit(z[train], variables.values[train])
        r2 = r2_scores(variables.values[val], reg.predict(z[val]))
        summ = res.summary()
        rows.append({"model": cfg.name, "latent": cfg.latent, "n_layers": cfg.n_layers, "width": cfg.width,
                     "hidden_sizes": " ".join(map(str, summ["hidden_sizes"])) or "-",
                     "n_parameters": summ["n_parameters"], "best_val_loss": summ["best_val_loss"],
                     "epochs_run": summ["epochs_run"], "elapsed_s": summ["elapsed_s"]})
        r2_rows.append(pd.DataFrame({"model": cfg.name, "variable": variables.variable,
                                     "dim": variables.dim.astype(int), "r2": r2}))
        progress(i + 1, len(grid), f"{cfg.name}: val loss {res.best_val_loss:.4g}")
    return SuperpositionResult(models=pd.DataFrame(rows), r2=pd.concat(r2_rows, ignore_index=True), config=config)


# --------------------------------------------------------------------------- (b) SAE sweep
@dataclass(frozen=True)
class SweepConfig:
    """SAE grid on the reference autoencoder's latent (paper Supp. Table 2, reduced).

    ``expansions``: hidden = expansion × latent size; ``l1s`` for Vanilla/ReLU;
    ``k_fractions`` for TopK (k = fraction × hidden, at least 1). ``corr_threshold``: a latent
    "corresponds" to a variable when their Pearson r exceeds it (latents per variable).
    ``paper_style``: train with :data:`PAPER_STYLE` (else the SAE classes' good-practice
    defaults)."""

    archs: tuple[str, ...] = ("vanilla", "relu", "topk")
    expansions: tuple[float, ...] = (1, 2, 5, 10)
    lrs: tuple[float, ...] = (1e-3, 1e-4)
    l1s: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    k_fractions: tuple[float, ...] = (0.1, 0.25, 0.5)
    paper_style: bool = True
    epochs: int = 100
    batch_size: int = 128
    patience: int | None = 10
    corr_threshold: float = 0.7
    y_genes: int = 1000
    ae: AEConfig | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("archs", "expansions", "lrs", "l1s", "k_fractions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _need(set(self.archs) <= {"vanilla", "relu", "topk", "batchtopk"} and self.archs,
              "archs must be among vanilla, relu, topk, batchtopk")
        _need(all(e >= 1 for e in self.expansions) and self.expansions, "expansions must be >= 1")
        _need(all(0 < f <= 1 for f in self.k_fractions), "k_fractions must lie in (0, 1]")
        _need(-1 <= self.corr_threshold <= 1, "corr_threshold must lie in [-1, 1]")

    def grid(self, d: int) -> list[tuple[SAEConfig, float]]:
        """``(sae_config, lr)`` for a ``d``-dimensional latent."""
        out = []
        style = PAPER_STYLE if self.paper_style else {}
        for arch in self.archs:
            for e in self.expansions:
                hidden = max(d, int(round(e * d)))
                for lr in self.lrs:
                    if arch in ("vanilla", "relu"):
                        cls = VanillaConfig if arch == "vanilla" else ReLUConfig
                        out += [(cls(hidden=hidden, l1=l1, penalty="l1", l1_scale="mean", resample_dead=False,
                                     **style), lr) for l1 in self.l1s]  # the paper's sweep: its L1 scale
                    else:
                        from core.sae import BatchTopKConfig

                        cls = TopKConfig if arch == "topk" else BatchTopKConfig
                        ks = sorted({max(1, int(round(f * hidden))) for f in self.k_fractions})
                        out += [(cls(hidden=hidden, k=k, **style), lr) for k in ks]
        return out


def _sae_label(cfg: SAEConfig, lr: float) -> str:
    knob = f"l1={cfg.l1:g}" if hasattr(cfg, "l1") else f"k={cfg.k}"
    return f"{cfg.arch} h={cfg.hidden} lr={lr:g} {knob}"


def _train(emb: np.ndarray, cfg: SAEConfig, *, lr: float, epochs: int, batch_size: int, patience: int | None,
           device: str, seed: int, progress: Progress, should_stop: ShouldStop):
    train = TrainConfig(lr=lr, epochs=epochs, batch_size=batch_size, patience=patience, seed=seed, device=device)
    res = _train_sae(emb, config=cfg, train=train, progress=progress, should_stop=should_stop)
    acts = encode_activations(res.sae, emb)
    metrics, features = sae_metrics(res.sae, emb, activations=acts)
    return res, acts, metrics, features


@dataclass
class SweepResult:
    """``runs``: one row per SAE (settings, FVU, live, dead, redundant, L0, and per variable
    the mean best Pearson ``r[<var>]`` and mean latents per variable ``n[<var>]``);
    ``variables``: one row per SAE × variable column."""

    runs: pd.DataFrame
    variables: pd.DataFrame
    embedding_dim: int
    autoencoder: dict | None
    config: SweepConfig

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"sweep_runs": self.runs, "sweep_variables": self.variables}

    def summary(self) -> dict[str, Any]:
        runs = self.runs
        out: dict[str, Any] = {"n_runs": len(runs), "embedding_dim": self.embedding_dim,
                               "autoencoder": self.autoencoder}
        key = "r[X'']" if "r[X'']" in runs else None
        by_arch = {}
        for arch, grp in runs.groupby("arch", sort=False):
            best = grp.sort_values(key, ascending=False).iloc[0] if key else grp.iloc[0]
            by_arch[str(arch)] = {
                "median_fvu": _f(grp["fvu"].median()), "median_dead_fraction": _f(grp["dead_fraction"].median()),
                "median_l0": _f(grp["l0"].median()),
                "best_run": str(best["run"]), "best_r[X'']": _f(best[key]) if key else None,
                "best_n[X'']": _f(best["n[X'']"]) if key else None,
            }
        out["by_arch"] = by_arch
        by_lr = runs.groupby("lr")["fvu"].median()
        out["median_fvu_by_lr"] = {f"{lr:g}": _f(v) for lr, v in by_lr.items()}
        return out


def run_sae_sweep(adata, *, config: SweepConfig = SweepConfig(), seed: int, embedding: np.ndarray | None = None,
                  progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> SweepResult:
    """Train every SAE of ``config.grid`` on the reference latent and measure the paper's
    metrics (appendix A.1.5)."""
    pre = 0 if embedding is not None else 1
    grid_len = len(config.grid(max(1, embedding.shape[1] if embedding is not None else 1)))
    total = pre + grid_len
    emb, ae_summary = _embedding_or_train(adata, embedding, config.ae, seed, _sub(progress, 0, pre, total),
                                          should_stop)
    d = emb.shape[1]
    grid = config.grid(d)
    total = pre + len(grid)
    variables = variable_matrix(adata, y_genes=config.y_genes, seed=seed)
    rows, var_tables = [], []
    for i, (cfg, lr) in enumerate(grid):
        _check_stop(should_stop)
        label = _sae_label(cfg, lr)
        t0 = time.monotonic()
        res, acts, metrics, _ = _train(emb, cfg, lr=lr, epochs=config.epochs, batch_size=config.batch_size,
                                       patience=config.patience, device=config.device, seed=seed,
                                       progress=_sub(progress, pre + i, pre + i + 1, total), should_stop=should_stop)
        r = pearson_matrix(acts, variables.values)
        table = recovery_table(r, variables, threshold=config.corr_threshold)
        table.insert(0, "run", label)
        var_tables.append(table)
        row = {"run": label, "arch": cfg.arch, "hidden": cfg.hidden, "expansion": cfg.hidden / d, "lr": lr,
               "l1": getattr(cfg, "l1", np.nan), "k": getattr(cfg, "k", np.nan),
               "fvu": metrics["fvu"], "mse": metrics["mse"], "live": metrics["live"], "dead": metrics["dead"],
               "dead_fraction": metrics["dead_fraction"], "redundant": metrics["redundant"], "l0": metrics["l0"],
               "stop_reason": res.stop_reason, "elapsed_s": round(time.monotonic() - t0, 3)}
        for name in variables.names:
            sel = table[table["variable"] == name]
            row[f"r[{name}]"] = float(np.nanmean(sel["best_r"])) if sel["best_r"].notna().any() else np.nan
            row[f"n[{name}]"] = float(sel["n_latents"].mean())
        rows.append(row)
        progress(pre + i + 1, total, f"{label}: FVU {metrics['fvu']:.3g}, live {metrics['live']}")
    return SweepResult(runs=pd.DataFrame(rows), variables=pd.concat(var_tables, ignore_index=True),
                       embedding_dim=d, autoencoder=ae_summary, config=config)


# --------------------------------------------------------------------------- (c) recovery
@dataclass(frozen=True)
class RecoveryConfig:
    """One SAE (``sae``, default Vanilla 10 × latent, L1 1e-3 in the paper's style — the
    sweep's best region) vs the ``baselines`` on the same latent; ``target``: the paper's
    "nearly perfect" r."""

    sae: SAEConfig = VanillaConfig(expansion=10, l1=1e-3, penalty="l1", l1_scale="mean", resample_dead=False,
                                   **PAPER_STYLE)
    lr: float = 1e-3
    epochs: int = 50
    batch_size: int = 128
    patience: int | None = 5
    baselines: tuple[str, ...] = ("latent", "pca", "ica", "svd")
    y_genes: int = 1000
    corr_threshold: float = 0.7
    target: float = 0.9
    ae: AEConfig | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        _need(set(self.baselines) <= set(BASELINES), f"baselines must be among {', '.join(BASELINES)}")


@dataclass
class RecoveryResult:
    """``table``: one row per method × variable column (best |r|); ``sae_metrics``: the SAE's
    summary. ``activations`` (CSR cells × latents) and ``embedding`` are kept for
    :func:`run_structure`. ``y_ceiling`` (large simulations): mean over genes of
    r(Y, E[Y]) — the best any function of the hidden state can reach on noisy counts."""

    table: pd.DataFrame
    sae_metrics: dict[str, Any]
    embedding: np.ndarray
    activations: sp.csr_matrix
    autoencoder: dict | None
    config: RecoveryConfig
    y_ceiling: float | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"recovery": self.table, "recovery_means": self.means().reset_index()}

    def means(self) -> pd.DataFrame:
        """Mean best |r| per method (rows) and variable (columns)."""
        m = group_means(self.table, "best_r", by=["method"])
        wide = m.pivot(index="method", columns="variable", values="best_r")
        methods = list(dict.fromkeys(self.table["method"]))
        return wide[[v for v in ORDER if v in wide.columns]].loc[methods]

    def summary(self) -> dict[str, Any]:
        wide = self.means()
        sae = wide.loc["sae"]
        return {
            "mean_best_r": {m: {v: _f(x) for v, x in row.items()} for m, row in wide.iterrows()},
            "recovered": {v: bool(x >= self.config.target) for v, x in sae.items() if not math.isnan(x)},
            "target": self.config.target,
            "sae": {k: self.sae_metrics[k] for k in ("hidden", "live", "dead", "l0", "fvu", "redundant")},
            "autoencoder": self.autoencoder,
            "y_ceiling": _f(self.y_ceiling) if self.y_ceiling is not None else None,
        }


def run_recovery(adata, *, config: RecoveryConfig = RecoveryConfig(), seed: int,
                 embedding: np.ndarray | None = None, progress: Progress = no_progress,
                 should_stop: ShouldStop = never_stop) -> RecoveryResult:
    """Best |Pearson| between each variable and any SAE latent, and the same for each
    baseline's components. (|r| for every method: PCA/ICA components have no sign.)"""
    total = 3.0
    emb, ae_summary = _embedding_or_train(adata, embedding, config.ae, seed, _sub(progress, 0, 1, total),
                                          should_stop)
    variables = variable_matrix(adata, y_genes=config.y_genes, seed=seed)
    _check_stop(should_stop)
    res, acts, metrics, features = _train(emb, config.sae, lr=config.lr, epochs=config.epochs,
                                          batch_size=config.batch_size, patience=config.patience,
                                          device=config.device, seed=seed, progress=_sub(progress, 1, 2, total),
                                          should_stop=should_stop)
    _check_stop(should_stop)
    tables = []
    t = recovery_table(pearson_matrix(acts, variables.values), variables, threshold=config.corr_threshold,
                       absolute=True)
    t.insert(0, "method", "sae")
    tables.append(t)
    for j, method in enumerate(config.baselines):
        comps = baseline_components(emb, method=method, seed=seed)
        t = recovery_table(pearson_matrix(comps, variables.values), variables, threshold=config.corr_threshold,
                           absolute=True)
        t.insert(0, "method", method)
        tables.append(t)
        progress(2 + (j + 1) / len(config.baselines), total, f"baseline {method}")
    ceiling = None
    if "E[Y]" in variables.names:
        y, ey = variables.values[:, variables.columns("Y")], variables.values[:, variables.columns("E[Y]")]
        yc, ec = y - y.mean(0), ey - ey.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (yc * ec).sum(0) / np.sqrt((yc ** 2).sum(0) * (ec ** 2).sum(0))
        ceiling = float(np.nanmean(r))
    return RecoveryResult(table=pd.concat(tables, ignore_index=True), sae_metrics=metrics, embedding=emb,
                          activations=acts, autoencoder=ae_summary, config=config, y_ceiling=ceiling)


# --------------------------------------------------------------------------- (d) structure
@dataclass(frozen=True)
class StructureConfig:
    """Pseudo-connectivity thresholds (percentiles of the cosine matrix) and the BH-adjusted
    binomial-test level ``alpha`` for a feature × program match; ``match``: a feature's best
    program by most shared genes (``"hits"``, the paper) or by smallest p (``"p"``).
    ``recovery`` trains the SAE when no activations are given."""

    percentiles: tuple[float, ...] = (20, 30, 40, 50, 60, 70, 80)
    alpha: float = 0.05
    match: str = "hits"
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "percentiles", tuple(self.percentiles))
        _need(all(0 <= q < 100 for q in self.percentiles) and self.percentiles, "percentiles must lie in [0, 100)")
        _need(0 < self.alpha < 1, "alpha must lie in (0, 1)")
        _need(self.match in ("hits", "p"), "match must be hits (the paper) or p")


@dataclass
class StructureResult:
    """``by_percentile``: one row per threshold (features, significant features, programs
    matched, mean coverage of matched programs, fraction of all M entries recovered, chance
    coverage, and ``*_any`` without the significance filter); ``programs``: per threshold ×
    program; ``features``: per threshold × feature."""

    by_percentile: pd.DataFrame
    programs: pd.DataFrame
    features: pd.DataFrame
    config: StructureConfig

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"structure": self.by_percentile, "structure_programs": self.programs,
                "structure_features": self.features}

    def summary(self) -> dict[str, Any]:
        bp = self.by_percentile
        return {
            "percentiles": [float(q) for q in bp["percentile"]],
            "mean_coverage": [_f(x) for x in bp["mean_coverage"]],
            "chance_coverage": [_f(x) for x in bp["chance_coverage"]],
            "programs_matched_fraction": [_f(x) for x in bp["programs_matched_fraction"]],
            "entries_recovered": [_f(x) for x in bp["entries_recovered"]],
            "mean_coverage_any": [_f(x) for x in bp["mean_coverage_any"]],
            "chance_coverage_any": [_f(x) for x in bp["chance_coverage_any"]],
            "n_live_features": int(bp["n_features"].iloc[0]) if len(bp) else 0,
        }


def cosine_genes_latents(counts, activations) -> np.ndarray:
    """Cosine similarity (genes, latents) between every gene's counts and every latent's
    activations across cells; 0 where either is all-zero."""
    y = sp.csr_matrix(counts, dtype=np.float64)
    a = sp.csr_matrix(activations, dtype=np.float64)
    dot = (y.T @ a).toarray()
    ny = np.sqrt(np.asarray(y.multiply(y).sum(0)).ravel())
    na = np.sqrt(np.asarray(a.multiply(a).sum(0)).ravel())
    denom = ny[:, None] * na[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
    return cos


def structure_match(cos: np.ndarray, M: np.ndarray, *, percentile: float, alpha: float, match: str = "hits"):
    """One threshold: ``(features_table, programs_table, row)``.

    Pseudo connectivity ``P = cos > percentile(cos, q)`` (genes × features). For every
    feature f and program j: hits = |genes(f) ∩ genes_M(j)|, one-sided binomial test
    (``scipy.stats.binom.sf``) of hits among |genes(f)| at rate |genes_M(j)| / n_genes,
    BH-adjusted over all pairs. Best match of f: the program with most hits (ties: smaller
    p; the paper) or, with ``match="p"``, the most significant program (ties: more hits);
    coverage = hits / |genes_M(j)|. A program is recovered by its significant best-matching
    features; its coverage is their maximum (paper appendix A.1.6). ``mean_coverage_any`` is
    the same without the significance filter (every feature's best match counts)."""
    from scipy.stats import binom, false_discovery_control

    g, h = cos.shape
    thr = np.percentile(cos, percentile)
    P = cos > thr
    Mb = np.asarray(M) > 0
    hits = P.T.astype(np.int64) @ Mb.astype(np.int64)                               # (features, programs)
    n_f = P.sum(0)                                                                  # genes per feature
    size = Mb.sum(0)                                                                # genes per program
    rate = size / g
    pvals = binom.sf(hits - 1, n_f[:, None], rate[None, :])
    padj = false_discovery_control(np.clip(pvals.ravel(), 0.0, 1.0)).reshape(pvals.shape)
    if match not in ("hits", "p"):
        raise InputError(f"match must be hits or p (got {match!r})")
    best = _best_programs(hits, pvals, match=match)
    idx = np.arange(h)
    coverage = hits[idx, best] / np.maximum(size[best], 1)
    significant = (padj[idx, best] < alpha) & (hits[idx, best] > 0)
    density = n_f / g
    features = pd.DataFrame({"percentile": percentile, "feature": idx, "n_genes": n_f, "best_program": best,
                             "hits": hits[idx, best], "coverage": coverage, "p": pvals[idx, best],
                             "p_adj": padj[idx, best], "significant": significant, "chance": density})
    programs = _program_matches(best, significant, coverage, hits, size, density, padj, percentile=percentile)
    # the paper's literal number: every feature's best match counts, significant or not
    any_cov = [coverage[best == j].max() for j in range(Mb.shape[1]) if np.any(best == j)]
    any_chance = [density[best == j][np.argmax(coverage[best == j])] for j in range(Mb.shape[1]) if np.any(best == j)]
    programs["coverage_any"] = [float(coverage[best == j].max()) if np.any(best == j) else np.nan
                                for j in range(Mb.shape[1])]
    matched = programs[programs["matched"]]
    row = {
        "percentile": percentile, "threshold": float(thr), "pseudo_density": float(P.mean()),
        "n_features": h, "n_significant_features": int(significant.sum()),
        "programs_matched": int(len(matched)), "programs_matched_fraction": len(matched) / max(1, len(programs)),
        "mean_coverage": float(matched["coverage"].mean()) if len(matched) else np.nan,
        "chance_coverage": float(matched["chance"].mean()) if len(matched) else np.nan,
        "entries_recovered": float(matched["hits"].sum() / max(1, programs["n_genes"].sum())),
        "programs_best_any": len(any_cov),
        "mean_coverage_any": float(np.mean(any_cov)) if any_cov else np.nan,
        "chance_coverage_any": float(np.mean(any_chance)) if any_chance else np.nan,
    }
    return features, programs, row


def _best_programs(hits: np.ndarray, pvals: np.ndarray, *, match: str) -> np.ndarray:
    """Each feature's best program (features,): most hits (ties: smaller p) or, with ``match="p"``,
    smallest p (ties: more hits)."""
    best = np.empty(hits.shape[0], dtype=int)
    for f in range(hits.shape[0]):
        if match == "hits":
            top = np.flatnonzero(hits[f] == hits[f].max())
            best[f] = top[np.argmin(pvals[f, top])]
        else:
            top = np.flatnonzero(pvals[f] == pvals[f].min())
            best[f] = top[np.argmax(hits[f, top])]
    return best


def _program_matches(best: np.ndarray, significant: np.ndarray, coverage: np.ndarray, hits: np.ndarray,
                     size: np.ndarray, density: np.ndarray, padj: np.ndarray, *, percentile: float) -> pd.DataFrame:
    """One row per program: its significant best-matching features and the one of most coverage."""
    prog_rows = []
    for j in range(size.size):
        sel = np.flatnonzero(significant & (best == j))
        if sel.size:
            k = sel[np.argmax(coverage[sel])]
            prog_rows.append({"percentile": percentile, "program": j, "n_genes": int(size[j]), "matched": True,
                              "n_features": int(sel.size), "best_feature": int(k), "hits": int(hits[k, j]),
                              "coverage": float(coverage[k]), "chance": float(density[k]), "p_adj": float(padj[k, j])})
        else:
            prog_rows.append({"percentile": percentile, "program": j, "n_genes": int(size[j]), "matched": False,
                              "n_features": 0, "best_feature": -1, "hits": 0, "coverage": 0.0, "chance": np.nan,
                              "p_adj": np.nan})
    return pd.DataFrame(prog_rows)


def run_structure(adata, *, config: StructureConfig = StructureConfig(), seed: int,
                  embedding: np.ndarray | None = None, activations=None, progress: Progress = no_progress,
                  should_stop: ShouldStop = never_stop) -> StructureResult:
    """Structure recovery (appendix A.1.6) on the live latents of an SAE: pass
    ``activations`` (cells × latents, e.g. ``RecoveryResult.activations``) or let it train
    the recovery SAE (on ``embedding`` or the reference autoencoder's latent)."""
    simulation_info(adata)  # refuses data without ground truth
    if activations is None:
        rec = run_recovery(adata, config=replace(config.recovery, baselines=()), seed=seed, embedding=embedding,
                           progress=_sub(progress, 0, 1, 2), should_stop=should_stop)
        activations = rec.activations
    acts = sp.csr_matrix(activations)
    if acts.shape[0] != adata.n_obs:
        raise InputError(f"activations have {acts.shape[0]} rows for {adata.n_obs} cells")
    live = np.flatnonzero(np.diff(acts.tocsc().indptr) > 0)
    if live.size == 0:
        raise InputError("the SAE has no live latents: nothing to compare with M",
                         fix="train with a smaller L1 weight or a larger k")
    cos = cosine_genes_latents(adata.X, acts[:, live])
    M = np.asarray(adata.varm["sim_M"])
    feats, progs, rows = [], [], []
    for i, q in enumerate(config.percentiles):
        _check_stop(should_stop)
        f, p, row = structure_match(cos, M, percentile=float(q), alpha=config.alpha, match=config.match)
        f["feature"] = live[f["feature"].to_numpy()]
        p.loc[p["best_feature"] >= 0, "best_feature"] = live[p.loc[p["best_feature"] >= 0, "best_feature"].to_numpy()]
        feats.append(f)
        progs.append(p)
        rows.append(row)
        progress(1 + (i + 1) / len(config.percentiles), 2, f"percentile {q:g}")
    return StructureResult(by_percentile=pd.DataFrame(rows), programs=pd.concat(progs, ignore_index=True),
                           features=pd.concat(feats, ignore_index=True), config=config)


# --------------------------------------------------------------------------- all together
EXPERIMENTS = ("superposition", "sweep", "recovery", "structure")


def quick_configs() -> dict[str, Any]:
    """Smaller grids and fewer epochs (``featurelens simulate experiment --quick``; tests)."""
    return {
        "superposition": SuperpositionConfig(layers=(1, 2), widths=("narrow", "wide")),
        "sweep": SweepConfig(expansions=(2, 10), lrs=(1e-3,), l1s=(1e-3, 1.0), k_fractions=(0.25,), epochs=15,
                             patience=5),
        "recovery": RecoveryConfig(epochs=30),
        "structure": StructureConfig(recovery=RecoveryConfig(epochs=30)),
    }


def run_experiments(adata, *, which: tuple[str, ...] = EXPERIMENTS, configs: dict[str, Any] | None = None,
                    seed: int, progress: Progress = no_progress,
                    should_stop: ShouldStop = never_stop) -> dict[str, Any]:
    """Run several experiments sharing one reference autoencoder (sweep, recovery, structure)
    and one SAE (recovery → structure). Returns ``{name: result}``, ``"elapsed_s"``
    (seconds per step) and ``"autoencoder"`` (the reference autoencoder's summary) when one
    was trained."""
    unknown = [w for w in which if w not in EXPERIMENTS]
    if unknown:
        raise InputError(f"unknown experiment(s): {', '.join(unknown)}", fix=f"use {', '.join(EXPERIMENTS)} or all")
    configs = {**{"superposition": SuperpositionConfig(), "sweep": SweepConfig(), "recovery": RecoveryConfig(),
                  "structure": StructureConfig()}, **(configs or {})}
    simulation_info(adata)
    steps = [w for w in EXPERIMENTS if w in which]
    needs_embedding = any(w in steps for w in ("sweep", "recovery", "structure"))
    total = len(steps) + int(needs_embedding)
    out: dict[str, Any] = {}
    elapsed: dict[str, float] = {}
    done = 0
    emb = None
    t0 = time.monotonic()
    if needs_embedding:
        ae = configs["recovery"].ae if "recovery" in steps else None
        emb, ae_res = reference_embedding(adata, ae=ae, seed=seed, progress=_sub(progress, 0, 1, total),
                                          should_stop=should_stop)
        out["autoencoder"] = ae_res.summary()
        elapsed["autoencoder"] = round(time.monotonic() - t0, 1)
        done = 1
    for name in steps:
        t0 = time.monotonic()
        sub = _sub(progress, done, done + 1, total)
        if name == "superposition":
            out[name] = run_superposition(adata, config=configs[name], seed=seed, progress=sub,
                                          should_stop=should_stop)
        elif name == "sweep":
            out[name] = run_sae_sweep(adata, config=configs[name], seed=seed, embedding=emb, progress=sub,
                                      should_stop=should_stop)
        elif name == "recovery":
            out[name] = run_recovery(adata, config=configs[name], seed=seed, embedding=emb, progress=sub,
                                     should_stop=should_stop)
        else:
            acts = out["recovery"].activations if "recovery" in out else None
            out[name] = run_structure(adata, config=configs[name], seed=seed, embedding=emb, activations=acts,
                                      progress=sub, should_stop=should_stop)
        done += 1
        elapsed[name] = round(time.monotonic() - t0, 1)
        progress(done, total, f"{name} done")
    out["elapsed_s"] = elapsed
    return out
