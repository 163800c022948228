"""The dataset an analysis was made from, opened again with its content hash checked."""
from __future__ import annotations

from pathlib import Path

from core.base.errors import InputError
from core.data.load import file_sha256, read_anndata

__all__ = ["load_analysis_dataset", "decoder_reference", "record_decoder", "DECODER_STEP", "DECODER_FILE"]

DECODER_STEP = "decoder"
DECODER_FILE = "decoder.json"


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


def decoder_reference(analysis) -> str | None:
    """The decoder the analysis names, or None (then the built-in model beside the data, if any):
    the one recorded later with :func:`record_decoder` (``decoder.json``; e.g. ``featurelens annotate
    --scvi-model DIR``), else ``settings['decoder']``, else ``dataset['decoder']`` (set when the
    analysis was made). A path (model folder, scvi-tools model folder, TorchScript file) or "none"."""
    rec = (analysis.config.get("steps", {}) or {}).get(DECODER_STEP)
    if rec and analysis.has(DECODER_FILE):
        ref = (analysis.read_json(DECODER_FILE) or {}).get("decoder")
        if ref:
            return str(ref)
    settings = analysis.config.get("settings", {}) or {}
    dataset = analysis.config.get("dataset", {}) or {}
    ref = settings.get("decoder") or dataset.get("decoder")
    return None if ref is None else str(ref)


def record_decoder(analysis, ref: str, *, kind: str) -> bool:
    """Make ``ref`` (an absolute path, or "none") the analysis's decoder from now on, as the step
    ``decoder`` (file ``decoder.json``, written atomically). False when it already was."""
    if decoder_reference(analysis) == str(ref):
        return False
    with analysis.step(DECODER_STEP, inputs={"decoder": str(ref), "kind": kind}) as w:
        w.write_json(DECODER_FILE, {"decoder": str(ref), "kind": kind})
    return True
