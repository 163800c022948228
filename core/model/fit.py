"""Fit the built-in expression model: seeded, early-stopped, with progress and cancel.

``fit_expression_model(X, ...)`` takes a count matrix (cells × genes, dense or sparse) and
returns a :class:`FittedModel` (the model, the embedding of every cell, held-out metrics).
Same data + same config (seed included) -> identical weights.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.base.threads import auto_threads, torch_threads
from core.base.training_loop import EarlyStopping, run_training
from core.model.config import ModelConfig
from core.model.nb import fit_nb_theta, gaussian_log_prob, nb_log_prob, poisson_log_prob
from core.model.vae import ExpressionModel

__all__ = ["FittedModel", "fit_expression_model", "check_counts", "as_csr", "one_hot", "encode_cells",
           "library_size", "heldout_metrics"]

MIN_CELLS = 20


@dataclass
class FittedModel:
    """A trained model and what it was trained on. ``embedding`` is None for a loaded model."""

    model: Any  # ExpressionModel
    config: ModelConfig
    gene_names: list[str]
    covariate: dict | None = None  # {"key": obs column, "categories": [...]} or None
    embedding: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

    @property
    def n_covariates(self) -> int:
        return 0 if not self.covariate else len(self.covariate["categories"])

    def covariates_for(self, labels: Sequence | None) -> np.ndarray | None:
        """One-hot covariates for per-cell batch labels, in the model's category order."""
        if not self.covariate:
            return None
        if labels is None:
            raise InputError(f"this model was fitted with the batch covariate {self.covariate['key']!r}",
                             fix="pass the batch label of every cell")
        return one_hot(labels, self.covariate["categories"], key=self.covariate["key"])


# --------------------------------------------------------------------------- helpers

def as_csr(X) -> "Any":
    """A float32 CSR copy-free view when possible."""
    import scipy.sparse as sp

    if sp.issparse(X):
        X = sp.csr_matrix(X)
    else:
        X = sp.csr_matrix(np.asarray(X))
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    return X


def library_size(X) -> np.ndarray:
    """Per-cell total counts, float64 (n_cells,)."""
    import scipy.sparse as sp

    if sp.issparse(X):
        return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    out = np.empty(X.shape[0], dtype=np.float64)
    step = max(1, 4_000_000 // max(1, X.shape[1]))
    for i in range(0, X.shape[0], step):
        out[i:i + step] = np.asarray(X[i:i + step], dtype=np.float64).sum(axis=1)
    return out


def one_hot(labels: Sequence, categories: Sequence[str], *, key: str = "batch") -> np.ndarray:
    labels = np.asarray([str(v) for v in labels])
    cats = [str(c) for c in categories]
    index = {c: i for i, c in enumerate(cats)}
    codes = np.array([index.get(v, -1) for v in labels], dtype=np.int64)
    if (codes < 0).any():
        unknown = sorted(set(labels[codes < 0]))
        raise InputError(f"{len(unknown)} {key} value(s) unknown to the model (e.g. {unknown[0]!r})",
                         fix=f"the model knows: {', '.join(cats[:20])}")
    out = np.zeros((len(labels), len(cats)), dtype=np.float32)
    out[np.arange(len(labels)), codes] = 1.0
    return out


def check_counts(X, likelihood: str, *, what: str = "the expression matrix") -> None:
    """Refuse data the likelihood cannot model (NaN, negatives; non-integers for NB)."""
    from core.data.load import ValidationReport, classify_counts

    report = ValidationReport()
    kind = classify_counts(X, report, what=what)
    report.raise_if_errors()
    if kind is None:
        raise InputError(f"{what} has no genes", fix="the model needs an expression matrix")
    if likelihood == "nb" and kind != "counts":
        raise InputError(
            f"{what} holds non-integer values, but the negative-binomial model needs raw counts",
            fix="put raw counts in .X or .layers['counts'] (choose it with --counts-layer); "
                "or continue on normalised data with a Gaussian likelihood: --likelihood gaussian",
        )


def _split(n: int, config: ModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([config.seed, 1])
    perm = rng.permutation(n)
    n_val = max(1, int(round(config.validation_fraction * n)))
    n_test = int(round(config.test_fraction * n))
    if config.test_fraction > 0:
        n_test = max(1, n_test)
    val, test, train = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
    return np.sort(train), np.sort(val), np.sort(test)


def _batch(X, lib: np.ndarray, cov: np.ndarray | None, idx: np.ndarray, device, *, nonzero: bool = False):
    import torch

    rows = X[idx]
    x = torch.from_numpy(rows.toarray()).to(device)
    library = torch.from_numpy(lib[idx].astype(np.float32)[:, None]).to(device)
    c = torch.from_numpy(cov[idx]).to(device) if cov is not None else torch.zeros((len(idx), 0), device=device)
    if not nonzero:
        return x, library, c
    r = np.repeat(np.arange(len(idx)), np.diff(rows.indptr))
    nz = (torch.from_numpy(r).to(device), torch.from_numpy(rows.indices.astype(np.int64)).to(device),
          torch.from_numpy(rows.data).to(device))
    return x, library, c, nz


def _eval_rows(n_genes: int, budget_bytes: int = 16 << 20) -> int:
    """Cells per evaluation chunk: about ``budget_bytes`` per dense cells × genes temporary."""
    return int(max(16, min(2048, budget_bytes // (8 * max(1, n_genes)))))


def _chunks(idx: np.ndarray, size: int):
    for i in range(0, len(idx), size):
        yield idx[i:i + size]


def _eval_loss(model, X, lib, cov, idx, *, config: ModelConfig, device) -> float:
    import torch

    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for chunk in _chunks(idx, _eval_rows(X.shape[1])):
            x, library, c, nz = _batch(X, lib, cov, chunk, device, nonzero=True)
            loss, _, _ = model.loss(x, library, c, kl_weight=config.kl_weight, sample=False, nonzero=nz)
            total += float(loss) * len(chunk)
            n += len(chunk)
    return total / max(1, n)


def encode_cells(model, X, lib: np.ndarray, cov: np.ndarray | None, *, device=None, chunk: int | None = None) -> np.ndarray:
    """Posterior means (n_cells, latent), float32, computed in cell chunks."""
    import torch

    device = device or torch.device("cpu")
    chunk = chunk or _eval_rows(X.shape[1])
    model.eval()
    out = np.empty((X.shape[0], model.config.latent), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, X.shape[0], chunk):
            idx = np.arange(i, min(i + chunk, X.shape[0]))
            x, library, c = _batch(X, lib, cov, idx, device)
            mean, _ = model.encode(x, library, c)
            out[idx] = mean.cpu().numpy()
    return out


def _nb_baseline(X, lib: np.ndarray, cov: np.ndarray | None, train_idx: np.ndarray, *, device):
    """``(p, theta)``: the training cells' per-gene composition (G,) and per-gene maximum-likelihood
    NB theta from up to 1,000 of them."""
    import torch


    train_sum = np.asarray(X[train_idx].sum(axis=0), dtype=np.float64).ravel()
    p = torch.from_numpy((train_sum / max(train_sum.sum(), 1.0)).astype(np.float32)).to(device)
    sub = train_idx if len(train_idx) <= 1000 else np.random.default_rng(0).choice(train_idx, 1000, replace=False)
    xs, ls, _ = _batch(X, lib, cov, np.sort(sub), device)
    return p, fit_nb_theta(xs, p[None, :] * ls)


def _gaussian_baseline(X, train_idx: np.ndarray, *, device):
    """``(mean, log variance)`` (G,) of every gene over the training cells."""
    import torch

    Xt = X[train_idx]
    mean = np.asarray(Xt.sum(axis=0), dtype=np.float64).ravel() / len(train_idx)
    sq = np.asarray(Xt.multiply(Xt).sum(axis=0), dtype=np.float64).ravel() / len(train_idx)
    var = np.maximum(sq - mean ** 2, 1e-6)
    return (torch.from_numpy(mean.astype(np.float32)).to(device),
            torch.from_numpy(np.log(var).astype(np.float32)).to(device))


def _pearson(s: np.ndarray, n_entries: int) -> float:
    """Pearson r from the sums ``(x, y, xx, yy, xy)`` over ``n_entries`` pairs."""
    sx, sy, sxx, syy, sxy = s
    cov_ = sxy - sx * sy / n_entries
    den = math.sqrt(max(sxx - sx * sx / n_entries, 0.0) * max(syy - sy * sy / n_entries, 0.0))
    return float(cov_ / den) if den > 0 else float("nan")


def heldout_metrics(model, X, lib: np.ndarray, cov: np.ndarray | None, idx: np.ndarray, train_idx: np.ndarray,
                    *, device=None) -> dict[str, float]:
    """Log-likelihood and reconstruction correlation on held-out cells, vs a per-gene-mean baseline.

    The model reconstructs each held-out cell from its own counts (z = posterior mean). The
    baseline predicts every cell from the training cells' per-gene composition × the cell's
    library (NB with per-gene maximum-likelihood theta from up to 1,000 training cells, and
    Poisson) — what a model without any cell state achieves.
    """
    import torch


    device = device or torch.device("cpu")
    model.eval()
    nb = model.likelihood == "nb"
    if nb:
        p, base_theta = _nb_baseline(X, lib, cov, train_idx, device=device)
    else:
        base_mean, base_logvar = _gaussian_baseline(X, train_idx, device=device)
    sums = {"model": 0.0, "baseline": 0.0, "poisson": 0.0}
    corr = {"model": np.zeros(5), "baseline": np.zeros(5)}  # sum x, y, xx, yy, xy
    n_cells = 0
    with torch.no_grad():
        for chunk in _chunks(idx, _eval_rows(X.shape[1])):
            x, library, c = _batch(X, lib, cov, chunk, device)
            z, _ = model.encode(x, library, c)
            sums["model"] += float(model.log_likelihood(x, z, library, c).sum())
            pred = model.expected(z, library, c)
            if nb:
                base = p[None, :] * library
                sums["baseline"] += float(nb_log_prob(x, base, base_theta).sum())
                sums["poisson"] += float(poisson_log_prob(x, base).sum())
                tx, tm, tb = torch.log1p(x), torch.log1p(pred), torch.log1p(base)
            else:
                base = base_mean[None, :].expand_as(x)
                sums["baseline"] += float(gaussian_log_prob(x, base, base_logvar).sum())
                tx, tm, tb = x, pred, base
            for name, t in (("model", tm), ("baseline", tb)):
                a, b = tx.double(), t.double()
                corr[name] += np.array([float(a.sum()), float(b.sum()), float((a * a).sum()), float((b * b).sum()),
                                        float((a * b).sum())])
            n_cells += len(chunk)
    n_entries = n_cells * X.shape[1]
    lik = "nb" if nb else "gaussian"
    out = {
        "heldout_cells": int(n_cells),
        f"heldout_{lik}_loglik_per_cell": sums["model"] / n_cells,
        f"baseline_{lik}_loglik_per_cell": sums["baseline"] / n_cells,
        "reconstruction_pearson" + ("_log1p" if nb else ""): _pearson(corr["model"], n_entries),
        "baseline_pearson" + ("_log1p" if nb else ""): _pearson(corr["baseline"], n_entries),
    }
    if nb:
        out["baseline_poisson_loglik_per_cell"] = sums["poisson"] / n_cells
    return out


# --------------------------------------------------------------------------- training

def fit_expression_model(
    X,
    *,
    config: ModelConfig | None = None,
    gene_names: Sequence[str] | None = None,
    batch: Sequence | None = None,
    batch_key: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    data_name: str = "the expression matrix",
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> FittedModel:
    """Train the built-in model on ``X`` (cells × genes counts; dense or scipy sparse).

    ``batch``: per-cell batch labels (optional covariate, named ``batch_key``). Raises
    :class:`~core.base.progress.Cancelled` when ``should_stop()`` turns True (nothing is returned),
    InputError for unusable data. Returns the best model (lowest validation loss).
    ``threads``: CPU threads for torch (None: :func:`core.base.threads.auto_threads`, 1 for layers
    under 2 million weights); the previous setting is restored afterwards.
    """
    config = config or ModelConfig()
    if threads is None:
        threads = auto_threads(weights=X.shape[1] * config.hidden, small=2_000_000)
    with torch_threads(threads):
        return _fit(X, config=config, gene_names=gene_names, batch=batch, batch_key=batch_key, device=device,
                    data_name=data_name, progress=progress, should_stop=should_stop)


def _init_at_gene_means(model, X_train, likelihood: str) -> None:
    """Start the decoder at the per-gene-mean baseline: a faster, steadier start."""
    import torch

    total = np.asarray(X_train.sum(axis=0), dtype=np.float64).ravel()
    with torch.no_grad():
        if likelihood == "nb":
            comp = total + 0.5
            model.decoder.out.bias.copy_(torch.from_numpy(np.log(comp / comp.sum()).astype(np.float32)))
        else:
            n = X_train.shape[0]
            mean = total / n
            var = np.asarray(X_train.multiply(X_train).sum(axis=0), dtype=np.float64).ravel() / n - mean ** 2
            model.decoder.out.bias.copy_(torch.from_numpy(mean.astype(np.float32)))
            model.log_gene_param.copy_(torch.from_numpy(np.log(np.maximum(var, 1e-4)).astype(np.float32)))


def _checked_counts(X, *, config: ModelConfig, gene_names, data_name) -> tuple[Any, np.ndarray, list[str]]:
    """Refuse unusable data; ``(X as float32 CSR, library sizes, gene names)``."""
    n_cells, n_genes = X.shape
    if n_cells < MIN_CELLS:
        raise InputError(f"only {n_cells} cells; the model needs at least {MIN_CELLS}")
    if n_genes < 2:
        raise InputError(f"only {n_genes} gene(s); the model needs at least 2")
    gene_names = [str(g) for g in (gene_names if gene_names is not None else [f"gene_{j}" for j in range(n_genes)])]
    if len(gene_names) != n_genes:
        raise InputError(f"{len(gene_names)} gene names for {n_genes} genes")
    check_counts(X, config.likelihood, what=data_name)
    X = as_csr(X)
    lib = library_size(X)
    if config.likelihood == "nb" and (lib <= 0).any():
        bad = int((lib <= 0).sum())
        raise InputError(f"{bad} cells have no counts at all (library size 0)",
                         fix="remove empty cells (e.g. sc.pp.filter_cells(adata, min_counts=1))")
    return X, lib, gene_names


def _batch_covariate(batch, batch_key, n_cells: int) -> tuple[dict | None, np.ndarray | None]:
    """``(covariate description, one-hot (n_cells, n_batches))``; ``(None, None)`` for fewer than 2 batches."""
    if batch is None:
        return None, None
    labels = np.asarray([str(b) for b in batch])
    if len(labels) != n_cells:
        raise InputError(f"{len(labels)} batch labels for {n_cells} cells")
    cats = sorted(set(labels.tolist()))
    if len(cats) < 2:
        return None, None
    return {"key": batch_key or "batch", "categories": cats}, one_hot(labels, cats, key=batch_key or "batch")


@dataclass
class _Trained:
    model: Any
    history: list[dict]
    epochs_run: int
    best_epoch: int
    best: float
    max_epochs: int
    warmup: int


def _train_model(X, lib: np.ndarray, cov: np.ndarray | None, train_idx: np.ndarray, val_idx: np.ndarray, *,
                 config: ModelConfig, dev, progress, should_stop) -> _Trained:
    """Seeded init at the gene means, KL warm-up, Adam, early stopping on the validation loss."""
    import torch


    max_epochs = config.epochs_for(len(train_idx))
    warmup = config.warmup_epochs(len(train_idx), max_epochs)
    start_stopping = max(warmup, config.min_epochs)
    n_train = len(train_idx)
    steps_per_epoch = n_train // config.batch_size + (n_train % config.batch_size >= 2)  # chunks of 1 are skipped
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ExpressionModel(X.shape[1], 0 if cov is None else cov.shape[1], config).to(dev)
        _init_at_gene_means(model, X[train_idx], config.likelihood)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        gen = torch.Generator(device=dev).manual_seed(config.seed)
        shuffle = np.random.default_rng([config.seed, 2])
        epoch_state = {"kl_weight": config.kl_weight, "loss": 0.0}

        def batches(epoch: int):
            model.train()
            epoch_state["kl_weight"] = config.kl_weight * min(1.0, (epoch + 1) / warmup) if warmup else config.kl_weight
            epoch_state["loss"] = 0.0
            for chunk in _chunks(shuffle.permutation(train_idx), config.batch_size):
                if len(chunk) >= 2:
                    yield chunk, _batch(X, lib, cov, chunk, dev, nonzero=True)

        def step(batch, done: int) -> None:
            chunk, (x, library, c, nz) = batch
            loss, _, _ = model.loss(x, library, c, kl_weight=epoch_state["kl_weight"], generator=gen, nonzero=nz)
            if not torch.isfinite(loss):
                raise InputError("the model's loss became NaN/Inf during training",
                                 fix="lower the learning rate (e.g. --lr 5e-4) or check the data for extreme values")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
            opt.step()
            epoch_state["loss"] += float(loss.detach()) * len(chunk)

        def evaluate(epoch: int, done: int) -> dict:
            val = _eval_loss(model, X, lib, cov, val_idx, config=config, device=dev)
            return {"epoch": epoch + 1, "train_loss": epoch_state["loss"] / n_train, "val_loss": val,
                    "kl_weight": epoch_state["kl_weight"]}

        # the lowest validation loss after warm-up is kept; patience counts clear (min_delta) improvements
        stopping = EarlyStopping(patience=config.patience, min_delta=config.min_delta, keep="lowest",
                                 warmup=max(0, start_stopping - 1), module=model)
        loop = run_training(batches=batches, step=step, evaluate=evaluate, epochs=max_epochs,
                            steps_per_epoch=steps_per_epoch, stopping=stopping, progress=progress,
                            should_stop=should_stop, cancel="raise", check_every_s=0.0,
                            eval_message=lambda row, epoch: f"epoch {row['epoch']}: validation loss {row['val_loss']:.2f}")
        # the budget ended before early stopping could start: keep the last weights
        best_epoch = stopping.best_row["epoch"] if stopping.restore() else loop.epochs
    model.eval()
    return _Trained(model=model, history=loop.history, epochs_run=loop.epochs, best_epoch=best_epoch,
                    best=stopping.best, max_epochs=max_epochs, warmup=warmup)


def _fit(X, *, config: ModelConfig, gene_names, batch, batch_key, device, data_name, progress,
         should_stop) -> FittedModel:
    import torch

    n_cells, n_genes = X.shape
    X, lib, gene_names = _checked_counts(X, config=config, gene_names=gene_names, data_name=data_name)
    covariate, cov = _batch_covariate(batch, batch_key, n_cells)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_idx, val_idx, test_idx = _split(n_cells, config)
    started = time.perf_counter()
    trained = _train_model(X, lib, cov, train_idx, val_idx, config=config, dev=dev, progress=progress,
                           should_stop=should_stop)
    model, epoch, max_epochs, best = trained.model, trained.epochs_run, trained.max_epochs, trained.best
    fit_seconds = time.perf_counter() - started
    progress(max_epochs, max_epochs, "evaluating on held-out cells")
    eval_idx = test_idx if len(test_idx) else val_idx
    metrics = heldout_metrics(model, X, lib, cov, eval_idx, train_idx, device=dev)
    metrics.update({
        "epochs_run": epoch, "best_epoch": trained.best_epoch, "max_epochs": max_epochs,
        "kl_warmup_epochs": trained.warmup, "stopped_early": epoch < max_epochs, "fit_seconds": round(fit_seconds, 2),
        "best_validation_loss": best if math.isfinite(best) else None,
        "n_cells": int(n_cells), "n_genes": int(n_genes),
        "n_train": int(len(train_idx)), "n_validation": int(len(val_idx)), "n_test": int(len(test_idx)),
        "heldout_set": "test" if len(test_idx) else "validation",
        "device": str(dev), "torch_threads": torch.get_num_threads(),
    })
    embedding = encode_cells(model, X, lib, cov, device=dev)
    model.cpu()
    return FittedModel(model=model, config=config, gene_names=gene_names, covariate=covariate,
                       embedding=embedding, metrics=metrics, history=trained.history)
