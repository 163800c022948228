"""Count and Gaussian likelihoods (pure functions, torch).

Negative binomial parametrised by its mean ``mu`` and inverse dispersion ``theta`` (R's
``size``; variance = mu + mu² / theta; dispersion alpha = 1 / theta). In SciPy's terms:
``scipy.stats.nbinom(n=theta, p=theta / (theta + mu))``.
"""
from __future__ import annotations

import math

import torch

__all__ = ["nb_log_prob", "poisson_log_prob", "gaussian_log_prob", "fit_nb_theta"]

_EPS = 1e-8


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, *, constant: bool = True) -> torch.Tensor:
    """Elementwise NB log-pmf.

    x: (n, g) counts; mu: (n, g) means > 0; theta: (g,) or (n, g) inverse dispersions > 0.
    ``constant=False`` drops ``-lgamma(x + 1)``, which does not depend on the parameters.
    Returns (n, g).
    """
    log_theta_mu = torch.log(theta + mu + _EPS)
    out = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        + theta * (torch.log(theta + _EPS) - log_theta_mu)
        + x * (torch.log(mu + _EPS) - log_theta_mu)
    )
    if constant:
        out = out - torch.lgamma(x + 1.0)
    return out


def poisson_log_prob(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Elementwise Poisson log-pmf, (n, g)."""
    return x * torch.log(mu + _EPS) - mu - torch.lgamma(x + 1.0)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise Gaussian log-density; log_var: (g,) or (n, g). Returns (n, g)."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var))


def fit_nb_theta(x: torch.Tensor, mu: torch.Tensor, *, steps: int = 25, chunk: int = 256,
                 tol: float = 1e-6) -> torch.Tensor:
    """Maximum-likelihood per-gene ``theta`` for fixed means (the baseline's dispersions).

    x, mu: (n, g). Newton's method on log-theta with the exact gradient and curvature
    (digamma/trigamma), started from the method-of-moments estimate; sums are accumulated
    over ``chunk`` rows, so memory stays at a few (chunk, g) temporaries. Returns (g,).
    """
    with torch.no_grad():
        x, mu = x.double(), mu.double().clamp_min(_EPS)
        excess = ((x - mu) ** 2 - mu).sum(0)
        mom = (mu ** 2).sum(0) / excess.clamp_min(_EPS)
        u = torch.log(torch.where(excess > 0, mom, torch.full_like(mom, 1e6)).clamp(1e-4, 1e6))
        for _ in range(steps):
            theta = torch.exp(u)
            g1 = torch.zeros_like(theta)
            g2 = torch.zeros_like(theta)
            for i in range(0, x.shape[0], chunk):
                xc, mc = x[i:i + chunk], mu[i:i + chunk]
                tm = theta + mc
                g1 += (torch.digamma(xc + theta) - torch.digamma(theta) + torch.log(theta) + 1.0
                       - torch.log(tm) - (theta + xc) / tm).sum(0)
                g2 += (torch.polygamma(1, xc + theta) - torch.polygamma(1, theta) + 1.0 / theta
                       - 2.0 / tm + (theta + xc) / tm ** 2).sum(0)
            grad_u = theta * g1
            curv_u = theta ** 2 * g2 + grad_u
            step = torch.where(curv_u < 0, -grad_u / curv_u, torch.sign(grad_u) * 0.5).clamp(-2.0, 2.0)
            u = (u + step).clamp(math.log(1e-4), math.log(1e6))
            if float(step.abs().max()) < tol:
                break
        return torch.exp(u).to(torch.float32)


def nb_log_prob_rows(log_mu: torch.Tensor, theta: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                     values: torch.Tensor) -> torch.Tensor:
    """Per-cell NB log-likelihood summed over genes, without ``-lgamma(x + 1)``, from sparse counts.

    log_mu: (n, g) log means; theta: (g,); the counts are given by their non-zero entries
    (rows, cols, values), each (nnz,). Zeros contribute only ``theta·log(theta / (theta + mu))``,
    so the lgamma terms are evaluated on the non-zeros alone. Equals
    ``nb_log_prob(x, exp(log_mu), theta, constant=False).sum(1)``. Returns (n,).
    """
    log_theta_mu = torch.log(theta + torch.exp(log_mu))
    dense = (theta * (torch.log(theta) - log_theta_mu)).sum(1)
    th = theta[cols]
    nz = (torch.lgamma(values + th) - torch.lgamma(th)
          + values * (log_mu[rows, cols] - log_theta_mu[rows, cols]))
    return dense.index_add(0, rows, nz)
