"""Export an analysis to share it: its tables as CSV/Parquet, or the whole folder as one .zip."""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
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


# --------------------------------------------------------------------------- AnnData write-back

H5AD_KEY = "featurelens"
OBSM_KEY = "X_sae"
VARM_KEY = "sae_decoder"


def obs_column(feature: int) -> str:
    """The ``.obs`` column of feature ``feature``'s activations: ``featurelens_<id>``."""
    return f"{H5AD_KEY}_{int(feature)}"


def top_features(features: pd.DataFrame, annotations: pd.DataFrame | None, n: int) -> list[int]:
    """The ``n`` live features with the most reported concepts, then the most frequent (ties: lower id)."""
    live = features[features["live"]] if "live" in features.columns else features
    counts = (annotations.groupby("feature").size() if annotations is not None and len(annotations)
              else pd.Series(dtype=int))
    table = pd.DataFrame({"feature": live["feature"].to_numpy(), "frequency": live["frequency"].to_numpy()})
    table["n_concepts"] = table["feature"].map(counts).fillna(0).astype(int)
    table = table.sort_values(["n_concepts", "frequency", "feature"], ascending=[False, False, True])
    return [int(f) for f in table["feature"].head(max(0, int(n)))]


def _h5ad_table(df: pd.DataFrame) -> dict:
    """A table as ``{column: 1-D array}`` that h5ad stores in ``.uns``: strings for text/categories
    (missing → ""), '/' in column names (an HDF5 path separator) replaced by '∕'; ``columns``
    keeps the original names in order."""
    out = {"columns": np.asarray([str(c) for c in df.columns], dtype=object)}
    for c in df.columns:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col):
            values = np.asarray(col.astype(object).where(col.notna(), "").astype(str), dtype=object)
        else:
            values = col.to_numpy()
        out[str(c).replace("/", "∕")] = values
    return out


def _checked_out(analysis: Analysis, out) -> Path:
    out = Path(out)
    if out.suffix != ".h5ad":
        raise InputError(f"{out} is not an .h5ad path", fix="name the output *.h5ad")
    data = Path((analysis.config.get("dataset", {}) or {}).get("path", ""))
    if data.is_file() and out.resolve() == data.resolve():
        raise InputError("the output would replace the analysis's own data file", fix="write to a new .h5ad")
    if out.exists():
        raise InputError(f"{out} already exists", fix="choose a new output file (exports never overwrite)")
    for name in ("activations.npz", "features.parquet"):
        if not analysis.has(name):
            raise InputError(f"{analysis.path} has no {name} yet", fix="run `featurelens train` first")
    return out


def write_h5ad(analysis: Analysis, out: str | os.PathLike, *, obs_features: Sequence[int] = (),
               annotations: pd.DataFrame | None = None, directions: pd.DataFrame | None = None,
               directions_note: str = "") -> Path:
    """Write a copy of the analysis's AnnData with its SAE results into the new file ``out``:

    - ``obsm['X_sae']``: every cell's activations, CSR float32 (n_cells, n_features);
    - ``obs['featurelens_<id>']``: the activations of ``obs_features`` (dense float32 columns);
    - ``varm['sae_decoder']``: ``directions`` (genes × features, indexed by gene name, columns
      the feature ids), NaN for genes it lacks; ``uns['featurelens']['decoder_features']`` names
      the columns and ``decoder_note`` says what the numbers are;
    - ``uns['featurelens']``: the features table, ``annotations`` (the reported concepts), the
      analysis settings as JSON, and the keys above.

    The user's file is only read (its content hash is checked); ``out`` is written atomically.
    """
    import scipy.sparse as sp

    from core.store.dataset import load_analysis_dataset

    out = _checked_out(analysis, out)
    adata = load_analysis_dataset(analysis)
    acts = sp.csr_matrix(analysis.read_npz_sparse("activations.npz"), dtype=np.float32)
    if acts.shape[0] != adata.n_obs:
        raise InputError(f"the analysis has activations for {acts.shape[0]} cells, its data {adata.n_obs}",
                         fix="re-run `featurelens train` on this data")
    feats = [int(f) for f in obs_features]
    bad = [f for f in feats if not 0 <= f < acts.shape[1]]
    if bad:
        raise InputError(f"feature {bad[0]} does not exist (the SAE has {acts.shape[1]} features)",
                         fix=f"give ids between 0 and {acts.shape[1] - 1}")
    adata.obsm[OBSM_KEY] = acts
    for f in feats:
        adata.obs[obs_column(f)] = acts[:, f].toarray().ravel()
    uns = _uns(analysis, feats, annotations)
    if directions is not None:
        genes = pd.Index([str(g) for g in adata.var_names])
        adata.varm[VARM_KEY] = directions.reindex(genes).to_numpy(dtype=np.float32)
        uns["decoder_features"] = np.asarray([int(c) for c in directions.columns], dtype=np.int64)
        uns["decoder_note"] = directions_note
    adata.uns[H5AD_KEY] = uns
    try:
        with io.atomic_path(out) as tmp:
            h5 = tmp.with_suffix(".h5ad")  # anndata wants the suffix; renamed onto tmp, then tmp onto out
            try:
                adata.write_h5ad(h5)
                os.replace(h5, tmp)
            finally:
                h5.unlink(missing_ok=True)
    except OSError as exc:
        raise WriteError(f"could not write {out}: {exc.strerror or exc}", fix="free disk space and retry") from exc
    return out


def _uns(analysis: Analysis, feats: list[int], annotations: pd.DataFrame | None) -> dict:
    import json

    cfg = {k: analysis.config.get(k) for k in ("dataset", "seed", "settings", "created", "versions")}
    uns = {"analysis": str(analysis.path), "obsm_key": OBSM_KEY, "obs_features": np.asarray(feats, dtype=np.int64),
           "obs_prefix": f"{H5AD_KEY}_", "features": _h5ad_table(analysis.read_parquet("features.parquet")),
           "config_json": json.dumps(cfg, default=str, sort_keys=True)}
    if analysis.has("sae.json"):
        uns["sae_json"] = json.dumps(analysis.read_json("sae.json"), default=str, sort_keys=True)
    if annotations is not None:
        uns["annotations"] = _h5ad_table(annotations.reset_index(drop=True))
    return uns
