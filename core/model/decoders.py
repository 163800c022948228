"""The decoder interface: latent -> expected expression, in bounded-memory cell chunks.

Three implementations, one contract:

- :class:`BuiltinDecoder`: the decoder of the built-in model (``featurelens fit-model``);
- :class:`TorchScriptDecoder`: a user's decoder exported to TorchScript (multiDGD, scVI, ...;
  see docs/decoders.md). Loaded with ``torch.jit.load`` (no pickled Python code runs) and
  checked with a probe call before use;
- :class:`NoDecoder`: a model without one (e.g. Geneformer). Annotation then uses observed
  counts; steering is refused with a message that says how to supply a decoder.

``decoder.decode(latent, library_size, covariates)`` yields :class:`DecodedChunk` blocks of
expected counts (``output × library size`` for composition decoders); :func:`decode_into`
fills a preallocated array or memmap, :func:`decode_to_memmap` writes a float32 ``.npy``.
Peak memory is one chunk (``max_chunk_bytes``, default 64 MiB), whatever the number of cells.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.base.io import atomic_path
from core.base.paths import user_path

__all__ = [
    "Decoder", "BuiltinDecoder", "TorchScriptDecoder", "NoDecoder", "DecodedChunk",
    "load_decoder", "decode_into", "decode_to_memmap", "decode_to_npy", "decode_all", "STEERING_NEEDS_DECODER",
    "DEFAULT_CHUNK_BYTES",
]

DEFAULT_CHUNK_BYTES = 64 << 20
STEERING_NEEDS_DECODER = (
    "steering needs the model's decoder (latent -> expression), and this model has none; "
    "annotation uses the observed counts instead"
)
HOW_TO_ADD_DECODER = (
    "fit the built-in model with `featurelens fit-model DATA.h5ad` (it gives an embedding and a decoder), "
    "or export your model's decoder to TorchScript and pass the .pt file (see docs/decoders.md)"
)
OUTPUTS = ("fractions", "counts")


@dataclass
class DecodedChunk:
    """Expected expression of cells ``start:stop``: ``values`` (stop − start, n_genes) float32."""

    start: int
    stop: int
    values: np.ndarray


class Decoder:
    """Base class. Subclasses implement :meth:`_forward` (one chunk, per unit library)."""

    kind = "abstract"
    available = True

    def __init__(self, *, n_latent: int | None, gene_names: Sequence[str] | None, n_genes: int | None,
                 n_covariates: int = 0, scales_with_library: bool = True):
        self.n_latent = n_latent
        self.gene_names = None if gene_names is None else [str(g) for g in gene_names]
        self.n_genes = n_genes if n_genes is not None else (None if gene_names is None else len(self.gene_names))
        self.n_covariates = int(n_covariates)
        self.scales_with_library = scales_with_library
        self._order: np.ndarray | None = None  # reorders output genes to the data's order

    # ------------------------------------------------------------------ to implement
    def _forward(self, z: np.ndarray, covariates: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "n_latent": self.n_latent, "n_genes": self.n_genes,
                "n_covariates": self.n_covariates, "scales_with_library": self.scales_with_library,
                "fingerprint": self.fingerprint()}

    # ------------------------------------------------------------------ the contract
    def match_genes(self, gene_names: Sequence[str]) -> "Decoder":
        """Check the decoder predicts the data's genes; reorder its output if only the order differs."""
        data = [str(g) for g in gene_names]
        if self.n_genes is not None and self.n_genes != len(data) and self.gene_names is None:
            raise InputError(
                f"the decoder predicts {self.n_genes} genes but the data has {len(data)}",
                fix="use the data the decoder was trained on (same genes, same order), or subset the data to them",
            )
        if self.gene_names is None or self.gene_names == data:
            return self
        dec = _pd_index(self.gene_names)
        shared = dec.intersection(_pd_index(data))
        if len(dec) != len(data) or len(shared) != len(data):
            missing = [g for g in data if g not in set(self.gene_names)]
            raise InputError(
                f"the decoder predicts {len(dec)} genes but the data has {len(data)} ({len(shared)} shared"
                + (f"; e.g. {missing[0]!r} is not predicted" if missing else "") + ")",
                fix="use the data the model was fitted on, or refit the model on this data",
            )
        self._order = dec.get_indexer(data)
        return self

    def _check_inputs(self, latent, library_size, covariates):
        z = np.asarray(latent)
        if z.ndim != 2:
            raise InputError(f"the latent must be 2-D (cells × dimensions), got shape {z.shape}")
        if self.n_latent is not None and z.shape[1] != self.n_latent:
            raise InputError(
                f"the decoder takes a {self.n_latent}-dimensional latent, got {z.shape[1]} dimensions",
                fix="decode the embedding the decoder was trained with (check the embedding key)",
            )
        if not np.issubdtype(z.dtype, np.number) or not np.isfinite(z).all():
            raise InputError("the latent contains NaN/Inf or non-numeric values")
        n = z.shape[0]
        if library_size is None:
            lib = None
        else:
            lib = np.asarray(library_size, dtype=np.float64).reshape(-1)
            if lib.shape[0] != n:
                raise InputError(f"{lib.shape[0]} library sizes for {n} cells")
            if not np.isfinite(lib).all() or (lib < 0).any():
                raise InputError("library sizes must be finite and non-negative")
        if self.n_covariates:
            if covariates is None:
                raise InputError(f"the decoder needs {self.n_covariates} covariate columns (e.g. batch one-hot)",
                                 fix="pass the cells' covariates (the batch used when the model was fitted)")
            cov = np.asarray(covariates, dtype=np.float32)
            if cov.shape != (n, self.n_covariates):
                raise InputError(f"covariates have shape {cov.shape}; the decoder needs ({n}, {self.n_covariates})")
        else:
            cov = np.zeros((n, 0), dtype=np.float32)
        return z, lib, cov

    def chunk_rows(self, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        """Cells per chunk so that one chunk's output and temporaries fit in ``max_chunk_bytes``."""
        per_cell = 4 * 3 * max(1, self.n_genes or 1)
        return max(1, int(max_chunk_bytes // per_cell))

    def decode_chunk(self, latent, library_size=None, covariates=None) -> np.ndarray:
        """Expected expression of a few cells at once, float32 (n, n_genes). No chunking."""
        z, lib, cov = self._check_inputs(latent, library_size, covariates)
        return self._decode_rows(z, lib, cov, 0, z.shape[0])

    def _decode_rows(self, z, lib, cov, start: int, stop: int) -> np.ndarray:
        out = np.asarray(self._forward(np.ascontiguousarray(z[start:stop], dtype=np.float32),
                                       np.ascontiguousarray(cov[start:stop])), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != stop - start or (self.n_genes is not None and out.shape[1] != self.n_genes):
            raise InputError(f"the decoder returned shape {out.shape} for {stop - start} cells "
                             f"(expected ({stop - start}, {self.n_genes}))")
        bad = ~np.isfinite(out)
        if bad.any():
            raise InputError(
                f"the decoder returned {int(bad.sum())} NaN/Inf values for cells {start}–{stop - 1}",
                fix="check the decoder and the latent it is given (same embedding, same scaling as in training)",
            )
        if self._order is not None:
            out = out[:, self._order]
        if self.scales_with_library and lib is not None:
            out *= lib[start:stop, None].astype(np.float32)
        return out

    def decode(self, latent, library_size=None, covariates=None, *, chunk_size: int | None = None,
               max_chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress: Progress = no_progress,
               should_stop: ShouldStop = never_stop) -> Iterator[DecodedChunk]:
        """Yield expected expression in cell chunks (``output × library_size``; None: per unit library).

        latent: (n, n_latent); library_size: (n,) or None; covariates: (n, n_covariates) one-hot or None.
        Raises InputError on bad input or a NaN/Inf output, Cancelled when ``should_stop()``.
        """
        z, lib, cov = self._check_inputs(latent, library_size, covariates)
        n = z.shape[0]
        step = int(chunk_size) if chunk_size else self.chunk_rows(max_chunk_bytes)
        if step < 1:
            raise InputError(f"chunk_size must be positive, got {chunk_size}")
        for start in range(0, n, step):
            if should_stop():
                raise Cancelled("decoding cancelled")
            stop = min(n, start + step)
            yield DecodedChunk(start, stop, self._decode_rows(z, lib, cov, start, stop))
            progress(stop, n, f"decoded {stop:,} of {n:,} cells")


def _pd_index(values):
    import pandas as pd

    return pd.Index([str(v) for v in values])


# --------------------------------------------------------------------------- helpers over decode()

def decode_into(decoder: Decoder, latent, library_size=None, covariates=None, *, out: np.ndarray, **kwargs) -> np.ndarray:
    """Fill ``out`` (n_cells × n_genes; an array or a float32 memmap) chunk by chunk; returns it."""
    n = np.asarray(latent).shape[0]
    if out.shape != (n, decoder.n_genes):
        raise InputError(f"output array has shape {out.shape}; expected ({n}, {decoder.n_genes})")
    for chunk in decoder.decode(latent, library_size, covariates, **kwargs):
        out[chunk.start:chunk.stop] = chunk.values
    return out


def decode_all(decoder: Decoder, latent, library_size=None, covariates=None, **kwargs) -> np.ndarray:
    """All cells in memory (small data, tests). For large data use :func:`decode_to_memmap`."""
    out = np.empty((np.asarray(latent).shape[0], decoder.n_genes), dtype=np.float32)
    return decode_into(decoder, latent, library_size, covariates, out=out, **kwargs)


def decode_to_npy(decoder: Decoder, latent, library_size=None, covariates=None, *,
                  target: str | os.PathLike, **kwargs) -> Path:
    """Stream expected expression into a float32 ``.npy`` at ``target`` (not atomic: see :func:`decode_to_memmap`).

    Chunks are appended with plain file writes, not through a writable memmap, so the process
    holds one chunk, not the dirty pages of the whole matrix.
    """
    n = np.asarray(latent).shape[0]
    with open(target, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.dtype("<f4").str, "fortran_order": False, "shape": (n, decoder.n_genes)})
        for chunk in decoder.decode(latent, library_size, covariates, **kwargs):
            np.ascontiguousarray(chunk.values, dtype="<f4").tofile(fh)
    return Path(target)


def decode_to_memmap(decoder: Decoder, latent, library_size=None, covariates=None, *,
                     path: str | os.PathLike, **kwargs) -> np.ndarray:
    """Write expected expression to a float32 ``.npy`` at ``path`` (atomically); return it memory-mapped read-only."""

    with atomic_path(path) as tmp:
        decode_to_npy(decoder, latent, library_size, covariates, target=tmp, **kwargs)
    return np.load(path, mmap_mode="r")


# --------------------------------------------------------------------------- implementations

class BuiltinDecoder(Decoder):
    """The decoder of a :class:`~core.model.fit.FittedModel` (fitted now or loaded from a model folder)."""

    kind = "builtin"

    def __init__(self, fitted, *, path: str | os.PathLike | None = None):
        super().__init__(n_latent=fitted.config.latent, gene_names=fitted.gene_names, n_genes=fitted.n_genes,
                         n_covariates=fitted.n_covariates, scales_with_library=fitted.config.likelihood == "nb")
        self.fitted = fitted
        self.path = None if path is None else Path(path)
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BuiltinDecoder":
        from core.model.store import load_model

        return cls(load_model(path), path=path)

    def covariates_for(self, labels) -> np.ndarray | None:
        return self.fitted.covariates_for(labels)

    def _forward(self, z: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        import torch

        module = self.fitted.model.decoder
        module.eval()
        with torch.no_grad():
            return module(torch.from_numpy(z), torch.from_numpy(covariates)).numpy()

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from core.base.io import content_hash

            state = self.fitted.model.state_dict()
            arrays = [state[k].detach().cpu().numpy() for k in sorted(state)]
            self._fingerprint = content_hash("builtin", self.fitted.config.to_dict(), self.fitted.gene_names,
                                             self.fitted.covariate, sorted(state), *arrays)
        return self._fingerprint

    def export_torchscript(self, path: str | os.PathLike) -> Path:
        """Save this decoder as TorchScript (``forward(z, covariates) -> composition``)."""
        import copy

        import torch


        module = copy.deepcopy(self.fitted.model.decoder).eval()
        with _quiet_jit():
            scripted = torch.jit.script(module)
            with atomic_path(path) as tmp:
                torch.jit.save(scripted, str(tmp))
        return Path(path)

    def describe(self) -> dict:
        return {**super().describe(), "path": None if self.path is None else str(self.path),
                "likelihood": self.fitted.config.likelihood}


class TorchScriptDecoder(Decoder):
    """A decoder saved with ``torch.jit.save``: ``forward(z)`` or ``forward(z, covariates)``.

    ``output="fractions"`` (default): the module returns per-gene expression for a unit library
    (e.g. a softmax composition), which is multiplied by the library size. ``output="counts"``:
    it already returns expected counts (library ignored).
    """

    kind = "torchscript"

    def __init__(self, path: str | os.PathLike, *, n_latent: int, n_genes: int | None = None,
                 gene_names: Sequence[str] | None = None, n_covariates: int = 0, output: str = "fractions",
                 probe_latent: np.ndarray | None = None):
        if output not in OUTPUTS:
            raise InputError(f"decoder output must be one of {', '.join(OUTPUTS)} (got {output!r})")
        super().__init__(n_latent=int(n_latent), gene_names=gene_names, n_genes=n_genes,
                         n_covariates=n_covariates, scales_with_library=output == "fractions")
        self.path = Path(path)
        self.output = output
        self.module = _load_torchscript(self.path)
        self._n_args = _forward_arity(self.module)
        self._sha = None
        self._probe(probe_latent)

    def _call(self, z, cov):
        import torch

        with torch.no_grad():
            zt = torch.from_numpy(z)
            out = self.module(zt) if self._n_args == 1 else self.module(zt, torch.from_numpy(cov))
        if isinstance(out, (tuple, list)):
            raise InputError(f"the decoder {self.path.name} returns a {type(out).__name__} of {len(out)} items, "
                             "not one tensor",
                             fix="wrap it so that forward returns only the expression tensor (e.g. `[0]`); "
                                 "see docs/decoders.md")
        if not isinstance(out, torch.Tensor):
            raise InputError(f"the decoder {self.path.name} returns a {type(out).__name__}, not a tensor")
        return out.detach().float().cpu().numpy()

    def _probe(self, probe_latent) -> None:
        name = self.path.name
        if probe_latent is not None and len(probe_latent):
            z = np.ascontiguousarray(np.asarray(probe_latent, dtype=np.float32)[:8])
        else:
            z = np.random.default_rng(0).normal(size=(4, self.n_latent)).astype(np.float32)
        cov = np.zeros((z.shape[0], self.n_covariates), dtype=np.float32)
        if self.n_covariates:
            cov[:, 0] = 1.0
        if self._n_args == 1 and self.n_covariates:
            raise InputError(f"the decoder {name} takes only the latent, but {self.n_covariates} covariate "
                             "columns were given", fix="export a decoder with forward(z, covariates), or pass no covariates")
        try:
            out = self._call(z, cov)
        except InputError:
            raise
        except Exception as exc:
            hint = _first_layer_width(self.module)
            extra = f" (its first layer takes {hint} inputs)" if hint and hint != self.n_latent + self.n_covariates else ""
            raise InputError(
                f"the decoder {name} fails on a {self.n_latent}-dimensional latent"
                + (f" + {self.n_covariates} covariates" if self.n_covariates else "") + f"{extra}: "
                + (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300],
                fix="decode the embedding the decoder was trained with (same dimension), "
                    "or re-export the decoder (see docs/decoders.md)",
            ) from None
        if out.ndim != 2 or out.shape[0] != z.shape[0]:
            raise InputError(f"the decoder {name} returned shape {tuple(out.shape)} for {z.shape[0]} cells; "
                             "it must return (cells × genes)")
        if self.n_genes is not None and out.shape[1] != self.n_genes:
            raise InputError(
                f"the decoder {name} predicts {out.shape[1]} genes but the data has {self.n_genes}",
                fix="use the data the decoder was trained on (same genes, same order)",
            )
        if not np.isfinite(out).all():
            raise InputError(f"the decoder {name} returned NaN/Inf on a probe of {z.shape[0]} cells",
                             fix="check the exported module (e.g. a log of zero) and the latent's scaling")
        if (out < 0).any():
            raise InputError(f"the decoder {name} returned negative values; expected expression must be >= 0",
                             fix="return the mean (e.g. softmax composition or exp of log-mean), not logits")
        if self.n_genes is None:
            self.n_genes = int(out.shape[1])

    def _forward(self, z: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        return self._call(z, covariates)

    def fingerprint(self) -> str:
        if self._sha is None:
            from core.data.load import file_sha256
            from core.base.io import content_hash

            self._sha = content_hash("torchscript", file_sha256(self.path), self.output, self.n_covariates,
                                     None if self._order is None else self._order.tolist())
        return self._sha

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path), "output": self.output}


class NoDecoder(Decoder):
    """A model without a decoder: annotation falls back to observed counts; steering is refused."""

    kind = "none"
    available = False

    def __init__(self, *, n_latent: int | None = None, gene_names: Sequence[str] | None = None):
        super().__init__(n_latent=n_latent, gene_names=gene_names, n_genes=None if gene_names is None else len(gene_names))

    def match_genes(self, gene_names) -> "NoDecoder":
        return self

    def _forward(self, z, covariates):
        raise InputError(STEERING_NEEDS_DECODER, fix=HOW_TO_ADD_DECODER)

    def decode_chunk(self, latent, library_size=None, covariates=None):
        raise InputError(STEERING_NEEDS_DECODER, fix=HOW_TO_ADD_DECODER)

    def decode(self, latent, library_size=None, covariates=None, **kwargs):
        raise InputError(STEERING_NEEDS_DECODER, fix=HOW_TO_ADD_DECODER)

    def fingerprint(self) -> str:
        return "none"


# --------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _quiet_jit():
    """torch >= 2.9 marks torch.jit deprecated in favour of torch.export; it still works. Keep output clean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit.*")
        yield


def _load_torchscript(path: Path):
    import torch

    from core.data.load import check_file

    check_file(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise InputError(
            f"{path.name} is not a TorchScript archive",
            fix="export the decoder with torch.jit.script(...) or torch.jit.trace(...) and torch.jit.save(m, path); "
                "pickled modules (torch.save(model)) are refused for safety",
        )
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise InputError(
            f"{path.name} could not be loaded as TorchScript: {type(exc).__name__}: "
            f"{(str(exc).strip().splitlines() or [''])[0][:200]}",
            fix="a file saved with torch.save(state_dict) or torch.save(model) is not TorchScript; "
                "see docs/decoders.md for how to export a decoder",
        ) from None
    module.eval()
    return module


def _forward_arity(module) -> int:
    try:
        n = len(module.forward.schema.arguments) - 1  # minus self
    except Exception:
        return 1
    if n not in (1, 2):
        raise InputError(f"the decoder's forward takes {n} arguments; FeatureLens calls forward(z) or "
                         "forward(z, covariates)", fix="wrap it as shown in docs/decoders.md")
    return n


def _first_layer_width(module) -> int | None:
    try:
        for _, p in module.named_parameters():
            if p.dim() == 2:
                return int(p.shape[1])
    except Exception:
        return None
    return None


def load_decoder(
    source: str | os.PathLike | None,
    *,
    n_latent: int | None = None,
    gene_names: Sequence[str] | None = None,
    n_covariates: int = 0,
    output: str = "fractions",
    probe_latent: np.ndarray | None = None,
) -> Decoder:
    """The decoder named by ``source``:

    - ``None`` or ``"none"``: :class:`NoDecoder`;
    - a model folder (``*.featurelens-model/`` with ``model.json``): :class:`BuiltinDecoder`;
    - a TorchScript file (``.pt``, ``.ts``, ``.torchscript``, ``.zip``): :class:`TorchScriptDecoder`,
      probed with ``probe_latent`` (a few rows of the embedding) or random latents.

    ``n_latent``: the embedding's dimension (required for TorchScript, checked for the built-in
    model); ``gene_names``: the data's genes, checked against the decoder's. Raises InputError
    naming the problem (wrong latent size, gene count, NaN output, unreadable file).
    """
    if source is None or str(source).lower() == "none":
        return NoDecoder(n_latent=n_latent, gene_names=gene_names)

    path = user_path(source)
    if path.is_dir():
        dec = BuiltinDecoder.load(path)
        if n_latent is not None and n_latent != dec.n_latent:
            raise InputError(
                f"the model in {path.name} has a {dec.n_latent}-dimensional latent, the embedding has {n_latent}",
                fix="use the embedding this model wrote (e.g. --embedding X_featurelens)",
            )
    elif path.suffix.lower() in (".pt", ".pth", ".ts", ".torchscript", ".zip", ".jit"):
        if n_latent is None:
            raise InputError("a TorchScript decoder needs the latent dimension", fix="choose the embedding first")
        dec = TorchScriptDecoder(path, n_latent=n_latent, n_genes=None if gene_names is None else len(gene_names),
                                 n_covariates=n_covariates, output=output, probe_latent=probe_latent)
    elif not path.exists():
        raise InputError(f"decoder {str(source)!r} does not exist",
                         fix="give a model folder from `featurelens fit-model`, a TorchScript .pt file, or 'none'")
    else:
        raise InputError(f"{path.name} is not a decoder FeatureLens can read",
                         fix="give a model folder (*.featurelens-model), a TorchScript .pt file, or 'none'")
    if gene_names is not None:
        dec.match_genes(gene_names)
    return dec
