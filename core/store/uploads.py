"""Keep an uploaded AnnData file in the data folder: size-capped, validated first, written atomically.

The browser sends the file's bytes; :func:`save_upload` refuses anything that is not a readable
``.h5ad`` (checked on a hidden temporary copy, ``.upload-*.h5ad.part``, with the same reader and
validation as :func:`core.data.load.load_dataset`: HDF5 only, never unpickled), then renames it into place. A refused upload leaves nothing behind.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.data.load import file_sha256, read_anndata, validate
from core.base.errors import InputError

__all__ = ["UploadResult", "save_upload", "decode_data_url", "safe_upload_name"]

_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UploadResult:
    name: str            # file name inside the data folder
    source: str          # picker value, "file:<name>"
    n_cells: int
    n_genes: int
    reused: bool         # an identical file was already there
    warnings: tuple[str, ...] = ()


def safe_upload_name(filename: str | None) -> str:
    """A plain ``.h5ad`` file name: no folders, only letters, digits, ``._-``."""
    base = Path(str(filename or "").replace("\\", "/")).name
    if not base.lower().endswith(".h5ad"):
        raise InputError(f"{base or 'the file'!s} is not an .h5ad file",
                         fix="upload an AnnData .h5ad (save it with adata.write_h5ad); for other files, copy "
                             "them into the data folder")
    stem = _NAME.sub("_", base[: -len(".h5ad")]).strip("._-")
    if not stem:
        raise InputError(f"{base!r} is not a usable file name", fix="rename the file, e.g. mydata.h5ad")
    return f"{stem[:100]}.h5ad"


def decode_data_url(contents: str) -> bytes:
    """The bytes of a browser data URL (``data:...;base64,<payload>``) as sent by ``dcc.Upload``."""
    head, sep, payload = (contents or "").partition(",")
    if not sep or ";base64" not in head:
        raise InputError("the upload arrived incomplete or in an unknown encoding", fix="upload the file again")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the upload arrived corrupted (invalid base64)", fix="upload the file again") from None


def save_upload(data: bytes, *, filename: str, folder: str | os.PathLike, max_bytes: int) -> UploadResult:
    """Validate ``data`` as an AnnData file and keep it as ``folder/<safe name>``.

    Refused (InputError, nothing written): a name not ending in ``.h5ad``, more than
    ``max_bytes``, an empty or non-HDF5 file, an AnnData that fails validation, or a different
    file already stored under that name. The same file uploaded twice is kept once.
    """
    name = safe_upload_name(filename)
    if len(data) > max_bytes:
        raise InputError(f"{name} is {len(data) / 2**20:,.1f} MB; uploads are limited to {max_bytes / 2**20:,.0f} MB",
                         fix="copy large files into the data folder directly and press ↻ "
                             "(or raise FEATURELENS_MAX_UPLOAD_MB)")
    if not data:
        raise InputError(f"{name} is empty (0 bytes)", fix="re-export the file and upload it again")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".h5ad.part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            adata = read_anndata(tmp)
            report, _ = validate(adata)
            report.raise_if_errors()
        except InputError as exc:
            raise InputError(exc.message.replace(tmp.name, name), fix=exc.fix) from None
        n_cells, n_genes = (int(n) for n in adata.shape)
        warnings = tuple(str(w) for w in report.warnings)
        if target.exists():
            if target.is_file() and file_sha256(target) == file_sha256(tmp):
                return UploadResult(name, f"file:{name}", n_cells, n_genes, True, warnings)
            raise InputError(f"a different file named {name} is already in the data folder",
                             fix="rename your file before uploading, or remove the old one")
        os.replace(tmp, target)
        return UploadResult(name, f"file:{name}", n_cells, n_genes, False, warnings)
    finally:
        if tmp.exists():
            tmp.unlink()
