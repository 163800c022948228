"""Datasets shipped with FeatureLens (see data/README.md for provenance and licences)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.base.errors import InputError
from core.base.paths import SHIPPED_DATA_DIR

__all__ = ["ShippedDataset", "SHIPPED", "shipped"]


@dataclass(frozen=True)
class ShippedDataset:
    name: str
    file: str
    embedding: str
    cell_type: str
    description: str

    @property
    def path(self) -> Path:
        return SHIPPED_DATA_DIR / self.file


SHIPPED: dict[str, ShippedDataset] = {
    d.name: d
    for d in (
        ShippedDataset(
            name="pbmc68k",
            file="pbmc68k_reduced.h5ad",
            embedding="X_pca",
            cell_type="bulk_labels",
            description="700 real PBMCs (10x 68k, scanpy's reduced subset), 765 genes, 10 cell types",
        ),
    )
}


def shipped(name: str) -> ShippedDataset:
    try:
        return SHIPPED[name]
    except KeyError:
        raise InputError(f"no shipped dataset named {name!r}", fix=f"choose one of: {', '.join(SHIPPED)}") from None
