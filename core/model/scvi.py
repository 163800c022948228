"""scvi-tools models as FeatureLens's expression model: a saved ``SCVI`` / ``LinearSCVI`` folder.

:class:`SCVIDecoder` decodes a latent ``z`` (n, n_latent) with the model's generative network:
expected counts = ``px.scale`` (the composition over genes, from
``module.generative(z, library=0, batch_index)``) × the cell's library size, which is what
scvi-tools calls ``px_rate``. Its gene dispersions ``θ = exp(px_r)`` feed the NB GLM of
steering. The embedding is ``model.get_latent_representation()`` (the posterior mean).

scvi-tools is an optional extra (``pip install 'featurelens[scvi]'``); it is imported inside the
functions that need it, so nothing else imports it. Loading a model unpickles its ``model.pt``
(as ``scvi.model.SCVI.load`` does): load only models you trust.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from core.base.errors import InputError
from core.data.load import file_sha256, read_anndata
from core.model.decoders import Decoder
from core.model.multiomics import expression_columns

__all__ = ["SCVIDecoder", "DeferredSCVI", "is_scvi_model_dir", "load_scvi_model", "scvi_latent", "prepare_scvi_dataset",
           "check_scvi_folder", "SCVI_MODELS", "SCVI_FIX"]

SCVI_MODELS = ("SCVI", "LinearSCVI")
SCVI_FIX = "install the optional extra: pip install 'featurelens[scvi]' (scvi-tools >= 1.2)"
_MODEL_FILE = "model.pt"


def is_scvi_model_dir(path: str | os.PathLike) -> bool:
    """True for a folder that looks like ``model.save(dir)`` of scvi-tools (a ``model.pt``, no
    FeatureLens ``model.json``). Cheap: reads no file, imports nothing."""
    p = Path(path)
    return p.is_dir() and (p / _MODEL_FILE).is_file() and not (p / "model.json").is_file()


def _import_scvi():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import scvi  # noqa: F401
    except ImportError as exc:
        raise InputError(f"using an scvi-tools model needs the scvi-tools package ({exc})", fix=SCVI_FIX) from None
    return scvi


def _saved(path: Path) -> tuple[str, list[str], dict]:
    """``(model class name, gene names, setup args)`` from the folder's ``model.pt``."""
    import torch

    try:
        saved = torch.load(path / _MODEL_FILE, map_location="cpu", weights_only=False)
        registry = saved["attr_dict"]["registry_"]
        genes = [str(g) for g in saved["var_names"]]
    except Exception as exc:  # a pickle, a zip, a dict without the keys: all "not an scvi-tools model"
        raise InputError(f"{path} is not a saved scvi-tools model ({type(exc).__name__}: {exc})",
                         fix="pass the folder written by `model.save(dir)` of scvi-tools") from None
    return str(registry.get("model_name", "")), genes, dict(registry.get("setup_args", {}) or {})


def check_scvi_folder(path) -> Path:
    """``path`` as a Path if it is an scvi-tools model folder by its files, else an InputError saying why."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"the scvi-tools model {path} is not a folder" if path.exists()
                         else f"the scvi-tools model folder {path} does not exist",
                         fix="pass the folder written by `model.save(dir)` (it holds model.pt)")
    if not (path / _MODEL_FILE).is_file():
        raise InputError(f"{path} has no {_MODEL_FILE}, so it is not a saved scvi-tools model",
                         fix="pass the folder written by `model.save(dir)` of scvi-tools")
    if (path / "model.json").is_file():
        raise InputError(f"{path} is a FeatureLens model folder (featurelens fit-model), not an scvi-tools model",
                         fix="pass the folder written by `model.save(dir)` of scvi-tools")
    return path


def _adata_for_model(adata, genes: list[str], setup: dict, path: Path):
    """A copy of ``adata`` restricted to the model's genes in the model's order (a copy: scvi-tools'
    setup adds ``_scvi_*`` fields to the AnnData it is given); InputError if the genes differ."""
    have = [str(g) for g in adata.var_names]
    if have != genes:
        have_set = set(have)
        missing = [g for g in genes if g not in have_set]
        extra = len(set(have) - set(genes))
        if missing or extra:
            raise InputError(
                f"the scvi-tools model {path.name} was trained on {len(genes)} genes, the data has {len(have)} "
                f"({len(missing)} of the model's genes missing" + (f", e.g. {missing[0]!r}" if missing else "")
                + (f"; {extra} genes the model does not know" if extra else "") + ")",
                fix="use the AnnData the model was trained on (the same genes, e.g. the same highly variable genes)")
    adata = adata[:, genes].copy() if have != genes else adata.copy()
    layer = setup.get("layer")
    if layer is not None and layer not in adata.layers:
        raise InputError(f"the scvi-tools model reads counts from .layers[{layer!r}], which the data lacks",
                         fix=f"use the AnnData the model was trained on (with .layers[{layer!r}])")
    batch = setup.get("batch_key")
    if batch is not None and batch not in adata.obs.columns:
        raise InputError(f"the scvi-tools model needs the batch column .obs[{batch!r}], which the data lacks",
                         fix="use the AnnData the model was trained on")
    return adata


def load_scvi_model(path: str | os.PathLike, adata):
    """The scvi-tools model saved in folder ``path``, set up on (a gene-aligned view of) ``adata``.

    ``adata``: an in-memory AnnData with the cells to decode and the model's genes (any order); it
    is not changed (the model is set up on a copy).
    Raises InputError when scvi-tools is missing, the folder is not an SCVI/LinearSCVI model, or
    the data's genes, counts layer or batch column do not match the model's.
    """
    path = check_scvi_folder(path)
    scvi = _import_scvi()
    name, genes, setup = _saved(path)
    if name not in SCVI_MODELS:
        raise InputError(f"{path.name} is a {name or 'unknown'} model; FeatureLens reads {' and '.join(SCVI_MODELS)}",
                         fix="train an scvi.model.SCVI (or LinearSCVI), or export the decoder to TorchScript "
                             "(docs/decoders.md)")
    adata = _adata_for_model(adata, genes, setup, path)
    cls = getattr(scvi.model, name)
    try:
        with _quiet():
            model = cls.load(str(path), adata=adata, accelerator="cpu")
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"scvi-tools could not load {path} on this data ({type(exc).__name__}: {exc})",
                         fix="use the AnnData the model was trained on, and the scvi-tools version that saved it") \
            from None
    return model


@contextlib.contextmanager
def _quiet():
    """scvi-tools' warnings and INFO lines (e.g. "model.pt already downloaded") hidden for one call;
    the caller's logging settings are put back."""
    log = logging.getLogger("scvi")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def scvi_latent(model) -> np.ndarray:
    """The model's embedding of its AnnData's cells: the posterior mean, float32 (n_cells, n_latent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.ascontiguousarray(model.get_latent_representation(), dtype=np.float32)


class SCVIDecoder(Decoder):
    """The generative model of a loaded scvi-tools ``SCVI``/``LinearSCVI`` (see :func:`load_scvi_model`).

    ``decode(z, library_size, covariates)`` → ``px.scale × library_size`` (n, n_genes), genes in
    the model's order (reordered to the data's by :meth:`match_genes`). Covariates: the batch
    one-hot (n, n_batch) in scvi-tools' category order when the model has more than one batch.
    """

    kind = "scvi"

    def __init__(self, model, *, path: str | os.PathLike | None = None):
        stats = model.summary_stats
        extra = int(stats.get("n_extra_categorical_covs", 0) or 0) + int(stats.get("n_extra_continuous_covs", 0) or 0)
        if extra:
            raise InputError("the scvi-tools model uses extra covariates (categorical_covariate_keys / "
                             "continuous_covariate_keys), which FeatureLens does not pass yet",
                             fix="train the model with batch_key only, or export its decoder to TorchScript "
                                 "(docs/decoders.md)")
        self.n_batch = int(stats.get("n_batch", 1) or 1)
        super().__init__(n_latent=int(model.module.n_latent), gene_names=[str(g) for g in model.adata.var_names],
                         n_genes=int(model.adata.n_vars), n_covariates=self.n_batch if self.n_batch > 1 else 0)
        self.model = model
        self.path = None if path is None else Path(path)
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, adata) -> "SCVIDecoder":
        """Load the model in folder ``path`` on ``adata`` (see :func:`load_scvi_model`)."""
        return cls(load_scvi_model(path, adata), path=path)

    @property
    def batch_categories(self) -> list[str]:
        if self.n_batch <= 1:
            return []
        mapping = self.model.adata_manager.get_state_registry("batch").categorical_mapping
        return [str(c) for c in mapping]

    def cell_covariates(self) -> np.ndarray | None:
        """The batch one-hot (n_cells, n_batch) float32 of the model's AnnData's cells, or None (one batch)."""
        if not self.n_covariates:
            return None
        codes = np.asarray(self.model.adata_manager.get_from_registry("batch")).reshape(-1).astype(np.int64)
        out = np.zeros((codes.size, self.n_batch), dtype=np.float32)
        out[np.arange(codes.size), codes] = 1.0
        return out

    def latent(self) -> np.ndarray:
        """The model's embedding of its cells (posterior mean), float32 (n_cells, n_latent)."""
        return scvi_latent(self.model)

    def _forward(self, z: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        import torch

        module = self.model.module
        module.eval()
        n = z.shape[0]
        codes = covariates.argmax(axis=1) if covariates.shape[1] else np.zeros(n, dtype=np.int64)
        with torch.no_grad():
            out = module.generative(z=torch.from_numpy(z), library=torch.zeros(n, 1),
                                    batch_index=torch.from_numpy(np.asarray(codes, np.int64)).reshape(n, 1))
            return out["px"].scale.cpu().numpy()

    def dispersion(self) -> np.ndarray | None:
        """Per-gene NB inverse dispersions θ = exp(px_r) (n_genes,) in the data's gene order; None when
        the model's dispersion is not one per gene (gene-batch, gene-label, gene-cell) or its
        likelihood is not NB/ZINB."""
        module = self.model.module
        if module.dispersion != "gene" or module.gene_likelihood not in ("nb", "zinb"):
            return None
        theta = np.exp(module.px_r.detach().cpu().numpy().astype(np.float64)).reshape(-1)
        theta = np.clip(theta, 1e-4, 1e6)
        return theta if self._order is None else theta[self._order]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from core.base.io import content_hash

            state = self.model.module.state_dict()
            arrays = [state[k].detach().cpu().numpy() for k in sorted(state)]
            self._fingerprint = content_hash("scvi", type(self.model).__name__, self.gene_names,
                                             self.batch_categories, sorted(state), *arrays)
        return self._fingerprint

    def describe(self) -> dict:
        module = self.model.module
        return {**super().describe(), "path": None if self.path is None else str(self.path),
                "model": type(self.model).__name__, "gene_likelihood": str(module.gene_likelihood),
                "dispersion": str(module.dispersion), "n_batch": self.n_batch}



class DeferredSCVI(Decoder):
    """An scvi-tools model folder named by an analysis; loaded once the analysis's AnnData is at hand
    (scvi-tools needs the cells in memory to set the model up)."""

    kind = "scvi"

    def __init__(self, path: str | os.PathLike):
        super().__init__(n_latent=None, gene_names=None, n_genes=None)
        self.path = Path(path)

    def resolve(self, adata) -> SCVIDecoder:
        """The :class:`SCVIDecoder` set up on ``adata``'s cells and expression columns (a backed
        AnnData is read into memory from its file)."""
        if getattr(adata, "isbacked", False):
            adata = read_anndata(adata.filename)
        cols = expression_columns(adata)
        return SCVIDecoder.load(self.path, adata[:, cols] if not np.all(cols) else adata)

    def fingerprint(self) -> str:
        return file_sha256(self.path / _MODEL_FILE)


def prepare_scvi_dataset(data: str | os.PathLike, model_dir: str | os.PathLike, *, key: str | None = None) -> dict:
    """Check that the scvi-tools model in ``model_dir`` fits the .h5ad ``data`` and that the data holds
    its embedding: ``.obsm[key]`` (default ``X_scVI``). When that key is missing the model's latent
    (posterior mean) is written there, the .h5ad rewritten atomically (temporary file + rename).

    Returns ``{"key", "counts_layer" (the model's counts layer or None), "written" (bool),
    "model_dir" (absolute), "n_latent"}``. InputError (nothing written) on any mismatch.
    """
    from core.model.api import write_h5ad_atomic

    data, model_dir = Path(data), Path(model_dir)
    if data.suffix.lower() != ".h5ad":
        raise InputError(f"an scvi-tools model needs its AnnData (.h5ad), got {data.name}",
                         fix="pass the .h5ad the model was trained on")
    key = key or "X_scVI"
    check_scvi_folder(model_dir)
    adata = read_anndata(data)
    cols = expression_columns(adata)
    decoder = SCVIDecoder.load(model_dir, adata[:, cols] if not np.all(cols) else adata)
    setup = _saved(model_dir)[2]
    written = key not in adata.obsm
    if written:
        adata.obsm[key] = decoder.latent()
        write_h5ad_atomic(adata, data)
    elif np.shape(adata.obsm[key]) != (adata.n_obs, decoder.n_latent):
        raise InputError(f".obsm[{key!r}] has shape {np.shape(adata.obsm[key])}; the scvi-tools model's latent is "
                         f"{decoder.n_latent}-dimensional",
                         fix="pass --embedding with the key holding model.get_latent_representation(), "
                             "or a new key to have it written")
    return {"key": key, "counts_layer": setup.get("layer"), "written": written,
            "model_dir": str(model_dir.resolve()), "n_latent": decoder.n_latent}
