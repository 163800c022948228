"""Save and load an SAE: ``sae.pt`` (state dict of tensors) + ``sae.json`` (config and sizes).

Loading never unpickles code: the state dict is read with ``torch.load(weights_only=True)``
and the model is rebuilt from the JSON config through the architecture registry.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import torch

from core.base import io
from core.base.errors import InputError, SchemaError
from core.sae.models import SparseAutoencoder
from core.sae.registry import build_sae, config_from_dict

__all__ = ["save_sae", "load_sae", "sae_metadata", "WEIGHTS_FILE", "CONFIG_FILE", "FORMAT_VERSION"]

WEIGHTS_FILE = "sae.pt"
CONFIG_FILE = "sae.json"
FORMAT = "featurelens-sae"
FORMAT_VERSION = 1


class _Writer(Protocol):  # core.store.analysis.StepWriter
    def write_json(self, name: str, obj: Any) -> None: ...
    def write_torch_state(self, name: str, state: dict) -> None: ...


def sae_metadata(sae: SparseAutoencoder, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``sae.json``: format, architecture, sizes, config, plus ``extra``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": sae.arch,
        "d_in": sae.d_in,
        "hidden": sae.hidden,
        "config": sae.config.to_dict(),
        **(extra or {}),
    }


def save_sae(sae: SparseAutoencoder, target: str | os.PathLike | _Writer, *,
             extra: dict[str, Any] | None = None) -> None:
    """Write ``sae.pt`` and ``sae.json`` into a folder, or through an analysis step writer
    (anything with ``write_json`` and ``write_torch_state``). ``extra``: more JSON-able keys
    for ``sae.json`` (e.g. the training config)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in sae.state_dict().items()}
    meta = sae_metadata(sae, extra=extra)
    if hasattr(target, "write_json") and hasattr(target, "write_torch_state"):
        target.write_torch_state(WEIGHTS_FILE, state)
        target.write_json(CONFIG_FILE, meta)
        return
    folder = Path(target)
    io.write_torch_state(folder / WEIGHTS_FILE, state)
    io.write_json(folder / CONFIG_FILE, meta)


def load_sae(source: str | os.PathLike | Any, *, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE from a folder holding ``sae.pt`` + ``sae.json``, from the path of either
    file, or from an :class:`~core.store.analysis.Analysis`. Returns the model in eval mode."""
    if hasattr(source, "file") and callable(source.file):
        weights, config = Path(source.file(WEIGHTS_FILE)), Path(source.file(CONFIG_FILE))
    else:
        path = Path(source)
        folder = path.parent if path.suffix in (".pt", ".json") else path
        weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    for p in (config, weights):
        if not p.is_file():
            raise InputError(f"no trained SAE at {p.parent} ({p.name} is missing)",
                             fix="run `featurelens train` first, or point to the folder holding sae.pt and sae.json")
    try:
        meta = io.read_json(config)
    except ValueError as exc:
        raise InputError(f"{config} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{config} is not a FeatureLens SAE description", fix="it was not written by FeatureLens")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise SchemaError(f"{config} was written by a newer FeatureLens (SAE format {meta['format_version']})",
                          fix="upgrade FeatureLens")
    cfg = config_from_dict(meta["config"])
    sae = build_sae(cfg, d_in=int(meta["d_in"]))
    try:
        state = io.read_torch_state(weights)
    except Exception as exc:  # corrupt file or pickled code: both refused
        raise InputError(f"cannot read SAE weights {weights} safely ({type(exc).__name__}: {exc})",
                         fix="re-train the SAE; FeatureLens only loads plain tensor state dicts") from None
    try:
        sae.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{weights} does not match {config.name} ({exc})".splitlines()[0],
                         fix="re-train the SAE; the two files come from different runs") from None
    return sae.to(device).eval()
