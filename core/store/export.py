"""Export an analysis to share it: its tables as CSV/Parquet, or the whole folder as one .zip."""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from core.base import io
from core.store.analysis import CONFIG_FILE, Analysis
from core.base.errors import InputError, WriteError

FORMATS = ("csv", "parquet")


def _visible_files(root: Path) -> list[Path]:
    """Every file of the analysis except hidden staging leftovers, in a stable order."""
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def export_tables(analysis: Analysis, out: str | os.PathLike, *, fmt: str = "csv") -> list[Path]:
    """Write every table of ``analysis`` (``*.parquet``, steering runs included) and its JSON
    summaries into the new folder ``out`` as CSV or Parquet. The folder appears complete or not at all.

    Returns the written files (relative to ``out``)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} already exists", fix="choose a new --out folder (exports never overwrite)")
    root = analysis.path
    sources = [p for p in _visible_files(root) if p.suffix in (".parquet", ".json")]
    if not any(p.suffix == ".parquet" for p in sources):
        raise InputError(f"{root} has no tables yet", fix="train and annotate it first (featurelens train / annotate)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as exc:
        raise WriteError(f"could not write into {out.parent}: {exc.strerror or exc}",
                         fix="choose an --out folder you can write to") from exc
    written: list[Path] = []
    try:
        for src in sources:
            rel = src.relative_to(root)
            if src.suffix == ".json":
                target = rel
                (staging / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, staging / target)
            else:
                target = rel.with_suffix(f".{fmt}")
                (staging / target).parent.mkdir(parents=True, exist_ok=True)
                if fmt == "parquet":
                    shutil.copyfile(src, staging / target)
                else:
                    pd.read_parquet(src).to_csv(staging / target, index=False)
            written.append(target)
        os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(f"could not export to {out}: {exc.strerror or exc}", fix="free disk space and retry") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def export_archive(analysis: Analysis, out: str | os.PathLike) -> Path:
    """Zip the whole analysis folder (weights, activations, tables, ``analysis.json``) into ``out``
    (written atomically). Unzipped anywhere, it opens with :meth:`Analysis.open`; its dataset is
    referenced by path and checksum, not copied."""
    out = Path(out)
    if out.suffix != ".zip":
        raise InputError(f"{out} is not a .zip path", fix="name the archive *.zip, or give a folder for tables")
    if out.exists():
        raise InputError(f"{out} already exists", fix="choose a new --out file (exports never overwrite)")
    root = analysis.path
    name = root.name
    try:
        with io.atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for src in _visible_files(root):
                zf.write(src, arcname=f"{name}/{src.relative_to(root).as_posix()}")
    except OSError as exc:
        raise WriteError(f"could not write {out}: {exc.strerror or exc}", fix="free disk space and retry") from exc
    return out


def unpack_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Analysis:
    """Unzip an exported analysis into the folder ``dest`` (member names are checked: nothing
    may land outside ``dest``) and open it."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or not any(n.endswith(f"/{CONFIG_FILE}") for n in names):
            raise InputError(f"{archive} is not an exported FeatureLens analysis", fix="export it with featurelens export")
        for n in names:
            if n.startswith("/") or ".." in Path(n).parts:
                raise InputError(f"{archive} holds an unsafe member name {n!r}", fix="do not open this archive")
        dest.mkdir(parents=True, exist_ok=True)
        zf.extractall(dest)
    return Analysis.open(dest / tops.pop())
