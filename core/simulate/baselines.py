"""Linear baselines for variable recovery (paper v2, Table S5): PCA, FastICA and truncated
SVD (scikit-learn) of the same embedding the SAE sees, plus the embedding's own axes."""
from __future__ import annotations

import warnings

import numpy as np

from core.base.errors import InputError

__all__ = ["BASELINES", "baseline_components"]

BASELINES = ("latent", "pca", "ica", "svd")


def baseline_components(embedding: np.ndarray, *, method: str, n_components: int | None = None,
                        seed: int) -> np.ndarray:
    """Components (cells, k) of ``embedding`` (cells, d) by ``method``:

    ``"latent"`` the embedding itself; ``"pca"`` :class:`sklearn.decomposition.PCA`;
    ``"ica"`` :class:`~sklearn.decomposition.FastICA` (unit-variance whitening);
    ``"svd"`` :class:`~sklearn.decomposition.TruncatedSVD` (no centring; at most ``d − 1``
    components, a scikit-learn limit). ``n_components`` defaults to ``d``."""
    x = np.asarray(embedding, dtype=np.float64)
    d = x.shape[1]
    k = d if n_components is None else int(n_components)
    if not 1 <= k <= d:
        raise InputError(f"n_components must be between 1 and the embedding's {d} dimensions (got {k})")
    if method == "latent":
        return x
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=k, random_state=seed).fit_transform(x)
    if method == "ica":
        from sklearn.decomposition import FastICA

        with warnings.catch_warnings():  # convergence warnings: the components are still usable
            warnings.simplefilter("ignore")
            return FastICA(n_components=k, whiten="unit-variance", max_iter=1000, random_state=seed).fit_transform(x)
    if method == "svd":
        from sklearn.decomposition import TruncatedSVD

        if d < 2:
            raise InputError("truncated SVD needs an embedding with at least 2 dimensions")
        return TruncatedSVD(n_components=min(k, d - 1), random_state=seed).fit_transform(x)
    raise InputError(f"unknown baseline {method!r}", fix=f"use one of: {', '.join(BASELINES)}")
