"""Configuration of the built-in expression model: one dataclass, validated, JSON round-trip.

The same object feeds the CLI (``featurelens fit-model``), the app and ``model.json``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.base.configs import config_from_dict
from core.base.errors import InputError

__all__ = ["ModelConfig", "LIKELIHOODS"]

LIKELIHOODS = ("nb", "gaussian")


@dataclass
class ModelConfig:
    """Architecture and training settings of the built-in VAE.

    Architecture: ``encoder: genes (+ batch one-hot) -> hidden -> (mean, log-variance) of a
    ``latent``-d Gaussian``; ``decoder: latent (+ batch one-hot) -> hidden -> genes``.
    ``likelihood="nb"``: softmax over genes × library size is the negative-binomial mean, one
    learned dispersion per gene (raw counts only). ``likelihood="gaussian"``: the decoder
    output is the mean of normalised expression, one learned variance per gene.

    Training: Adam (``lr``), minibatches of ``batch_size`` cells, KL weight warmed up from 0 to
    ``kl_weight`` over at least ``kl_warmup`` epochs and ``kl_warmup_steps`` optimiser steps (at
    most half the epoch budget; a short warm-up lets the KL term collapse the latent on
    small data), early stopping when the validation loss has not
    improved by a relative ``min_delta`` for ``patience`` epochs (after warm-up; the weights of
    the lowest validation loss are kept); ``max_epochs=None`` picks a budget from
    the number of cells. ``validation_fraction`` and ``test_fraction`` of the cells (drawn with
    ``seed``) are held out for early stopping and for the reported metrics.
    """

    latent: int = 20
    hidden: int = 128
    n_layers: int = 1
    likelihood: str = "nb"
    dropout: float = 0.1
    lr: float = 5e-3
    batch_size: int = 256
    max_epochs: int | None = None
    min_epochs: int = 10
    patience: int = 4
    min_delta: float = 1e-4
    kl_weight: float = 1.0
    kl_warmup: int = 10
    kl_warmup_steps: int = 400
    weight_decay: float = 1e-6
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def need(cond: bool, what: str, fix: str | None = None) -> None:
            if not cond:
                raise InputError(f"invalid model setting: {what}", fix=fix)

        for name in ("latent", "hidden", "n_layers", "batch_size", "min_epochs", "patience", "kl_warmup",
                     "kl_warmup_steps", "seed"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer (got {value!r})")
        need(1 <= self.latent <= 1024, f"latent must be between 1 and 1024 (got {self.latent})",
             "the paper's models use 20 dimensions")
        need(1 <= self.hidden <= 8192, f"hidden must be between 1 and 8192 (got {self.hidden})")
        need(1 <= self.n_layers <= 5, f"n_layers must be between 1 and 5 (got {self.n_layers})")
        need(self.likelihood in LIKELIHOODS, f"likelihood must be one of {', '.join(LIKELIHOODS)} "
             f"(got {self.likelihood!r})")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1) (got {self.dropout})")
        need(self.lr > 0, f"lr must be positive (got {self.lr})")
        need(self.batch_size >= 2, f"batch_size must be at least 2 (got {self.batch_size})")
        if self.max_epochs is not None:
            need(isinstance(self.max_epochs, int) and self.max_epochs >= 1,
                 f"max_epochs must be a positive integer (got {self.max_epochs!r})", "e.g. --epochs 100")
        need(self.min_epochs >= 0 and self.patience >= 1 and self.kl_warmup >= 0 and self.kl_warmup_steps >= 0,
             "min_epochs, kl_warmup and kl_warmup_steps must be >= 0, patience >= 1")
        need(0 <= self.min_delta < 1, f"min_delta must be in [0, 1) (got {self.min_delta})")
        need(self.kl_weight >= 0, f"kl_weight must be >= 0 (got {self.kl_weight})")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})")
        need(0.0 < self.validation_fraction < 0.5, "validation_fraction must be in (0, 0.5)")
        need(0.0 <= self.test_fraction < 0.5, "test_fraction must be in [0, 0.5)")
        need(self.validation_fraction + self.test_fraction < 0.6, "validation + test fractions must stay below 0.6")

    def epochs_for(self, n_cells: int) -> int:
        """The epoch budget: ``max_epochs`` or about 6,000 optimiser steps, between 30 and 400 epochs."""
        if self.max_epochs is not None:
            return self.max_epochs
        steps_per_epoch = max(1, -(-n_cells // self.batch_size))
        return int(min(400, max(30, round(6000 / steps_per_epoch))))

    def warmup_epochs(self, n_train: int, max_epochs: int) -> int:
        """Epochs of KL warm-up: ``kl_warmup`` or ``kl_warmup_steps`` worth, whichever is longer, ≤ half the budget."""
        steps_per_epoch = max(1, -(-n_train // self.batch_size))
        want = max(self.kl_warmup, -(-self.kl_warmup_steps // steps_per_epoch))
        return int(min(want, max_epochs // 2))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return config_from_dict(cls, d, what="model")
