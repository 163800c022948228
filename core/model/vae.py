"""The built-in expression model: a variational autoencoder with a count likelihood.

    encoder: log1p(x / library · 1e4) (+ batch one-hot) -> hidden -> q(z | x) = N(mean, exp(log_var))
    decoder: z (+ batch one-hot) -> hidden -> softmax over genes       (likelihood "nb")
             expected counts = softmax · library size; NB with one learned theta per gene
             z (+ batch one-hot) -> hidden -> mean of normalised data  (likelihood "gaussian")

As in scVI and multiDGD the decoder models the composition of a cell and the library size
scales it. The decoder is its own TorchScript-compatible module (:class:`ExpressionDecoder`),
so it can be exported and used exactly like an external decoder.
"""
from __future__ import annotations

import torch
from torch import nn

from core.model.config import ModelConfig
from core.model.nb import gaussian_log_prob, nb_log_prob, nb_log_prob_rows

__all__ = ["ExpressionModel", "ExpressionDecoder", "ExpressionEncoder", "SCALE"]

SCALE = 1e4  # counts per cell after library normalisation of the encoder input


def _mlp(n_in: int, hidden: int, n_layers: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ExpressionEncoder(nn.Module):
    """(n, genes + covariates) -> posterior mean and log-variance, each (n, latent)."""

    def __init__(self, n_in: int, config: ModelConfig):
        super().__init__()
        self.body = _mlp(n_in, config.hidden, config.n_layers, config.dropout)
        self.mean = nn.Linear(config.hidden, config.latent)
        self.log_var = nn.Linear(config.hidden, config.latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mean(h), self.log_var(h).clamp(-12.0, 8.0)


class ExpressionDecoder(nn.Module):
    """z (n, latent) and covariates (n, c) -> per-gene output (n, genes).

    Likelihood "nb": each row is a composition (softmax, sums to 1); multiply by library size
    for expected counts. Likelihood "gaussian": the mean of the normalised data.
    """

    def __init__(self, n_genes: int, n_covariates: int, config: ModelConfig):
        super().__init__()
        self.body = _mlp(config.latent + n_covariates, config.hidden, config.n_layers, 0.0)
        self.out = nn.Linear(config.hidden, n_genes)
        self.softmax = config.likelihood == "nb"
        self.n_covariates = n_covariates

    def logits(self, z: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        if self.n_covariates > 0:
            z = torch.cat([z, covariates], dim=1)
        return self.out(self.body(z))

    def forward(self, z: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        out = self.logits(z, covariates)
        if self.softmax:
            out = torch.softmax(out, dim=1)
        return out


class ExpressionModel(nn.Module):
    """The VAE. Attributes are plain modules/parameters so ``state_dict`` round-trips."""

    def __init__(self, n_genes: int, n_covariates: int, config: ModelConfig):
        super().__init__()
        self.config = config
        self.n_genes = n_genes
        self.n_covariates = n_covariates
        self.encoder = ExpressionEncoder(n_genes + n_covariates, config)
        self.decoder = ExpressionDecoder(n_genes, n_covariates, config)
        # nb: log theta (inverse dispersion) per gene; gaussian: log variance per gene
        self.log_gene_param = nn.Parameter(torch.zeros(n_genes))

    @property
    def likelihood(self) -> str:
        return self.config.likelihood

    def encoder_input(self, x: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "nb":
            x = torch.log1p(x * (SCALE / library.clamp_min(1.0)))
        if self.n_covariates > 0:
            x = torch.cat([x, covariates], dim=1)
        return x

    def encode(self, x: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor):
        """x: (n, genes), library: (n, 1) -> (mean, log_var), each (n, latent)."""
        return self.encoder(self.encoder_input(x, library, covariates))

    def expected(self, z: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        """Expected expression (n, genes): composition × library (nb) or the mean (gaussian)."""
        out = self.decoder(z, covariates)
        return out * library if self.likelihood == "nb" else out

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor,
                       *, constant: bool = True) -> torch.Tensor:
        """Elementwise log p(x | z), (n, genes)."""
        if self.likelihood == "nb":
            logits = self.decoder.logits(z, covariates)
            mu = torch.softmax(logits, dim=1) * library
            theta = torch.exp(self.log_gene_param).clamp(1e-4, 1e6)
            return nb_log_prob(x, mu, theta, constant=constant)
        mean = self.decoder(z, covariates)
        return gaussian_log_prob(x, mean, self.log_gene_param.clamp(-12.0, 12.0))

    def loss(self, x: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor, *, kl_weight: float,
             generator: torch.Generator | None = None, sample: bool = True,
             nonzero: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        """Negative ELBO per cell, averaged over the batch. Returns (loss, reconstruction nll, kl).

        ``nonzero``: (rows, cols, values) of ``x``'s non-zero entries; with the NB likelihood
        the lgamma terms are then computed on those alone (same value, less work).
        """
        mean, log_var = self.encode(x, library, covariates)
        if sample:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            z = mean + torch.exp(0.5 * log_var) * eps
        else:
            z = mean
        if self.likelihood == "nb" and nonzero is not None:
            log_mu = torch.log_softmax(self.decoder.logits(z, covariates), dim=1) + torch.log(library)
            theta = torch.exp(self.log_gene_param).clamp(1e-4, 1e6)
            nll = -nb_log_prob_rows(log_mu, theta, *nonzero).mean()
        else:
            nll = -self.log_likelihood(x, z, library, covariates, constant=False).sum(1).mean()
        kl = 0.5 * (torch.exp(log_var) + mean ** 2 - 1.0 - log_var).sum(1).mean()
        return nll + kl_weight * kl, nll, kl
