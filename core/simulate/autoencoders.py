"""Plain autoencoders of several depths and widths, trained on simulated counts (paper §5.1,
appendix A.1.3), whose latent space the experiments probe.

Architecture: a mirrored MLP. The encoder has ``n_layers`` hidden ReLU layers then a linear
layer to the latent (optionally ReLU); the decoder mirrors it with a linear output.

* ``"narrow"``: hidden sizes halve towards the latent: ``latent·2^L, …, latent·4, latent·2``.
* ``"wide"``: equidistant sizes from the input width down to the latent:
  ``linspace(top, latent, L + 1)[:-1]`` with ``top = min(n_genes, max_hidden)`` — the first
  hidden layer is as wide as allowed. ``max_hidden`` is our cap for CPU budgets (the paper
  used GPUs and no cap).

Input: counts → ``log1p`` (``transform="log1p"``) or raw (``"none"``), divided by one scalar
(the RMS of the training input) stored with the model; with ``max_genes`` only the genes of
highest variance (on training cells) are used, as in usual single-cell preprocessing — this
keeps 20,000-gene simulations tractable on a CPU. Loss: MSE. Adam, early stopping on
the validation loss with the best weights restored.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.base.training_loop import EarlyStopping, run_training

__all__ = ["AEConfig", "AEResult", "MLPAutoencoder", "train_autoencoder", "encode_latent", "WIDTHS", "TRANSFORMS"]

WIDTHS = ("narrow", "wide")
TRANSFORMS = ("log1p", "none")


def _need(cond: bool, what: str, fix: str | None = None) -> None:
    if not cond:
        raise InputError(f"invalid autoencoder setting: {what}", fix=fix)


def _int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class AEConfig:
    """One autoencoder: ``latent`` size, ``n_layers`` hidden layers per side, ``width``
    (``"narrow"`` or ``"wide"``), optimisation settings. ``patience=None``: no early stopping."""

    latent: int = 20
    n_layers: int = 1
    width: str = "narrow"
    max_hidden: int = 1024
    latent_activation: str = "none"
    transform: str = "log1p"
    max_genes: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    patience: int | None = 5
    val_fraction: float = 0.1
    device: str = "cpu"

    def __post_init__(self) -> None:
        _need(_int(self.latent) and self.latent >= 1, f"latent must be a positive integer (got {self.latent!r})")
        _need(_int(self.n_layers) and 0 <= self.n_layers <= 8, f"n_layers must be 0–8 (got {self.n_layers!r})")
        _need(self.width in WIDTHS, f"width must be one of {', '.join(WIDTHS)} (got {self.width!r})")
        _need(_int(self.max_hidden) and self.max_hidden >= 1, "max_hidden must be a positive integer")
        _need(self.latent_activation in ("none", "relu"), "latent_activation must be none or relu")
        _need(self.transform in TRANSFORMS, f"transform must be one of {', '.join(TRANSFORMS)}")
        _need(self.max_genes is None or (_int(self.max_genes) and self.max_genes >= 1),
              "max_genes must be a positive integer or None")
        _need(_num(self.lr) and self.lr > 0, f"lr must be positive (got {self.lr!r})")
        _need(_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay must be >= 0")
        _need(_int(self.batch_size) and self.batch_size >= 1, "batch_size must be a positive integer")
        _need(_int(self.epochs) and self.epochs >= 1, "epochs must be a positive integer")
        _need(self.patience is None or (_int(self.patience) and self.patience >= 1), "patience must be >= 1 or None")
        _need(_num(self.val_fraction) and 0 < self.val_fraction < 1, "val_fraction must be in (0, 1)")

    @property
    def name(self) -> str:
        """Short label, e.g. ``wide-L2-z20``."""
        return f"{self.width}-L{self.n_layers}-z{self.latent}"

    def hidden_sizes(self, d_in: int) -> list[int]:
        """Hidden layer widths of the encoder, input side first (the decoder mirrors them)."""
        L = self.n_layers
        if L == 0:
            return []
        if self.width == "narrow":
            sizes = [self.latent * 2 ** (L - i) for i in range(L)]
        else:
            top = min(d_in, self.max_hidden)
            sizes = [int(round(s)) for s in np.linspace(top, self.latent, L + 1)[:-1]]
        return [max(self.latent, min(s, self.max_hidden)) for s in sizes]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "AEConfig":
        from dataclasses import replace

        return replace(self, **changes)


class MLPAutoencoder(nn.Module):
    """Mirrored MLP autoencoder on normalised input (b, d_in) → latent (b, latent) → (b, d_in)."""

    def __init__(self, d_in: int, config: AEConfig, *, genes: np.ndarray | None = None):
        super().__init__()
        self.config = config
        self.d_in = d_in
        sizes = [d_in, *config.hidden_sizes(d_in)]
        enc: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            enc += [nn.Linear(a, b), nn.ReLU()]
        enc.append(nn.Linear(sizes[-1], config.latent))
        if config.latent_activation == "relu":
            enc.append(nn.ReLU())
        dec: list[nn.Module] = []
        back = [config.latent, *reversed(sizes[1:])]
        for a, b in zip(back[:-1], back[1:]):
            dec += [nn.Linear(a, b), nn.ReLU()]
        dec.append(nn.Linear(back[-1], d_in))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("input_scale", torch.ones(()))
        # input genes (indices into the counts' columns); all genes when None
        self.register_buffer("genes", torch.as_tensor(np.arange(d_in) if genes is None else genes, dtype=torch.long))
        self.n_genes_total: int | None = None

    def forward(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(xn)
        return z, self.decoder(z)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class AEResult:
    """A trained autoencoder: ``model`` (eval mode), ``history`` (one row per epoch:
    epoch, train_loss, val_loss, elapsed_s), ``stop_reason``, ``best_val_loss``, ``val_index``."""

    model: MLPAutoencoder
    config: AEConfig
    history: list[dict[str, float]]
    val_index: np.ndarray
    stop_reason: str
    elapsed_s: float
    best_val_loss: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.config.name, "config": self.config.to_dict(), "n_genes": self.model.d_in,
                "hidden_sizes": self.config.hidden_sizes(self.model.d_in), "n_parameters": self.model.n_parameters,
                "epochs_run": len(self.history), "stop_reason": self.stop_reason,
                "best_val_loss": self.best_val_loss, "elapsed_s": round(self.elapsed_s, 3)}


def _prepare(counts: Any, transform: str) -> Any:
    """Counts (cells × genes) as float32 CSR or dense, already transformed (log1p keeps zeros
    at zero, so a sparse matrix stays sparse)."""
    if sp.issparse(counts):
        x = sp.csr_matrix(counts, dtype=np.float32, copy=True)
        if transform == "log1p":
            np.log1p(x.data, out=x.data)
        return x
    arr = np.asarray(counts, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"counts must be a 2-D matrix (cells × genes); got shape {arr.shape}")
    return np.log1p(arr) if transform == "log1p" else arr.copy()


def _dense(block: Any) -> np.ndarray:
    return block.toarray() if sp.issparse(block) else np.ascontiguousarray(block)


def _top_variance(x: Any, rows: np.ndarray, k: int) -> np.ndarray:
    sub = x[rows]
    if sp.issparse(sub):
        mean = np.asarray(sub.mean(0)).ravel()
        var = np.asarray(sub.multiply(sub).mean(0)).ravel() - mean ** 2
    else:
        var = sub.var(0)
    return np.sort(np.argsort(-var, kind="stable")[:k])


def train_autoencoder(
    counts: Any,
    *,
    config: AEConfig = AEConfig(),
    seed: int,
    val_index: np.ndarray | None = None,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> AEResult:
    """Train an autoencoder on ``counts`` (cells × genes, dense or CSR).

    ``val_index``: held-out cells for early stopping (default: a seeded ``val_fraction`` split).
    Same data, config and seed give the same weights. ``should_stop()`` ends training early
    (``stop_reason="should_stop"``), keeping the best weights so far."""
    t0 = time.monotonic()
    x = _prepare(counts, config.transform)
    rng = np.random.default_rng(seed)
    train_index, val_index = _split_cells(x.shape[0], x.shape[1], val_index, rng=rng,
                                          val_fraction=config.val_fraction)
    model, x, scale = _seeded_model(x, train_index, config=config, seed=seed)
    device = torch.device(config.device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_train, x_val = x[train_index], x[val_index]
    bs = min(config.batch_size, train_index.size)
    steps_per_epoch = -(-train_index.size // bs)
    per_epoch = {"loss": 0.0, "steps": 0}

    def batch_tensor(block: Any) -> torch.Tensor:
        return torch.from_numpy(_dense(block) / np.float32(scale)).to(device)

    def batches(epoch: int):
        model.train()
        per_epoch.update(loss=0.0, steps=0)
        xs = x_train[rng.permutation(train_index.size)]
        for start in range(0, train_index.size, bs):
            yield batch_tensor(xs[start:start + bs])

    def step(xb: torch.Tensor, done: int) -> None:
        _, xh = model(xb)
        loss = torch.mean((xh - xb) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        per_epoch["loss"] += float(loss.detach())
        per_epoch["steps"] += 1

    def evaluate(epoch: int, done: int) -> dict[str, float]:
        return {"epoch": epoch + 1, "train_loss": per_epoch["loss"] / max(1, per_epoch["steps"]),
                "val_loss": _mse(model, x_val, batch_tensor), "elapsed_s": round(time.monotonic() - t0, 3)}

    stopping = EarlyStopping(patience=config.patience, min_delta=1e-4, module=model)
    loop = run_training(batches=batches, step=step, evaluate=evaluate, epochs=config.epochs,
                        steps_per_epoch=steps_per_epoch, stopping=stopping, progress=progress,
                        should_stop=should_stop, check_every_s=0.5, report_every_s=0.5, label=f"{config.name}: ")
    stopping.restore()
    model.eval()
    progress(1, 1, f"{config.name}: done")
    return AEResult(model=model, config=config, history=loop.history, val_index=val_index,
                    stop_reason=loop.stop_reason, elapsed_s=time.monotonic() - t0, best_val_loss=float(stopping.best))


def _split_cells(n: int, d: int, val_index: np.ndarray | None, *, rng: np.random.Generator,
                 val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(training cells, validation cells)``: ``val_index`` or a seeded ``val_fraction`` of the cells."""
    if n < 20 or d < 1:
        raise InputError(f"too few cells to train an autoencoder ({n} cells × {d} genes)",
                         fix="simulate at least 20 cells")
    if val_index is None:
        n_val = max(1, int(round(n * val_fraction)))
        val_index = np.sort(rng.permutation(n)[:n_val])
    val_index = np.asarray(val_index, dtype=np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_index] = False
    train_index = np.flatnonzero(train_mask)
    if train_index.size < 10 or val_index.size < 1:
        raise InputError(f"too few cells for training/validation ({train_index.size}/{val_index.size})")
    return train_index, val_index


def _seeded_model(x: Any, train_index: np.ndarray, *, config: AEConfig, seed: int) -> tuple[MLPAutoencoder, Any, float]:
    """``(model, x restricted to the model's genes, input scale)``: the ``max_genes`` most variable training
    genes, weights seeded by ``seed``, inputs scaled by the root mean square of up to 4,096 training cells."""
    d = x.shape[1]
    genes = None
    if config.max_genes is not None and config.max_genes < d:
        genes = _top_variance(x, train_index, config.max_genes)
        x = x[:, genes]
    d_used = x.shape[1]
    if config.latent > d_used:
        raise InputError(f"an autoencoder latent of {config.latent} is larger than the {d_used} genes",
                         fix=f"use a latent of at most {d_used}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLPAutoencoder(d_used, config, genes=genes).to(torch.device(config.device))
    model.n_genes_total = d
    sample = _dense(x[train_index[: min(train_index.size, 4096)]]).astype(np.float64)
    scale = float(np.sqrt(np.mean(sample ** 2))) or 1.0
    model.input_scale.fill_(scale)
    return model, x, scale



@torch.no_grad()
def _mse(model: MLPAutoencoder, x: Any, to_tensor, *, chunk: int = 2048) -> float:
    model.eval()
    sse, count = 0.0, 0
    for start in range(0, x.shape[0], chunk):
        xb = to_tensor(x[start:start + chunk])
        _, xh = model(xb)
        sse += float(((xh - xb) ** 2).sum())
        count += xb.numel()
    return sse / max(1, count)


@torch.no_grad()
def encode_latent(model: MLPAutoencoder, counts: Any, *, chunk: int = 2048) -> np.ndarray:
    """Latent representation (cells, latent) float32 of ``counts`` (cells × genes)."""
    genes = model.genes.cpu().numpy()
    n_cols = counts.shape[1]
    expected = model.n_genes_total if model.n_genes_total is not None else model.d_in
    if n_cols != expected:
        raise InputError(f"the autoencoder expects {expected} genes but the data has {n_cols}")
    x = counts[:, genes] if genes.size != n_cols else counts
    x = _prepare(x, model.config.transform)
    model.eval()
    device = next(model.parameters()).device
    scale = np.float32(model.input_scale)
    out = np.empty((x.shape[0], model.config.latent), dtype=np.float32)
    for start in range(0, x.shape[0], chunk):
        xb = torch.from_numpy(_dense(x[start:start + chunk]) / scale).to(device)
        out[start:start + xb.shape[0]] = model.encoder(xb).cpu().numpy()
    return out
