"""The dataset an analysis was made from, opened again with its content hash checked."""
from __future__ import annotations

from pathlib import Path

from core.base.errors import InputError
from core.data.load import file_sha256, read_anndata

__all__ = ["load_analysis_dataset"]


def load_analysis_dataset(analysis, *, check_hash: bool = True, backed: bool = False):
    """The AnnData an analysis was made from; refuses a file that changed since. ``backed``: opened
    read-only with ``.X`` left on disk (close it with ``adata.file.close()``)."""
    ref = analysis.config.get("dataset", {})
    path = Path(ref.get("path", ""))
    if ref.get("format") != "h5ad":
        raise InputError(f"{analysis.path} was made from an embedding file without expression",
                         fix="annotation needs counts: train the SAE from an .h5ad that holds them")
    if not path.is_file():
        raise InputError(f"the analysis's dataset {path} is missing", fix="restore the file at that path")
    if check_hash and ref.get("sha256") and file_sha256(path) != ref["sha256"]:
        raise InputError(f"{path.name} changed since this analysis was made (content hash differs)",
                         fix="re-run `featurelens train` on the new file, or restore the original")
    return read_anndata(path, backed=backed)
