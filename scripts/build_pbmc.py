"""Rebuild data/pbmc68k_reduced.h5ad from the scanpy wheel (700 real PBMC cells, 765 genes).

    python scripts/build_pbmc.py [--wheel scanpy-1.11.5-py3-none-any.whl] [--out data/pbmc68k_reduced.h5ad]

Without --wheel the script runs `pip download --no-deps scanpy==1.11.5` (PyPI only).
scanpy ships `10x_pbmc68k_reduced.h5ad` whose .raw.X is log1p(counts / n_counts · 1e4); the
integer counts are recovered as round(expm1(raw.X) · n_counts / 1e4). .X here holds those
counts (CSR int32); obs (incl. `bulk_labels`), var, and obsm X_pca / X_umap are kept.
"""
from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SCANPY_VERSION = "1.11.5"
MEMBER = "scanpy/datasets/10x_pbmc68k_reduced.h5ad"
ROOT = Path(__file__).resolve().parents[1]


def fetch_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", f"scanpy=={SCANPY_VERSION}", "-d", str(dest)],
        check=True,
    )
    return Path(glob.glob(str(dest / "scanpy-*.whl"))[0])


def build(wheel: Path, out: Path) -> None:
    import anndata as ad

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(MEMBER, tmp)
        src = ad.read_h5ad(Path(tmp) / MEMBER)
    raw = src.raw.X.toarray() if sp.issparse(src.raw.X) else np.asarray(src.raw.X)
    counts = np.round(np.expm1(raw) * src.obs["n_counts"].to_numpy()[:, None] / 1e4)
    assert (counts >= 0).all()
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.int32)),
        obs=src.obs.copy(),
        var=src.raw.var.copy() if src.raw.var.shape[1] else src.var.copy(),
        obsm={"X_pca": np.asarray(src.obsm["X_pca"], dtype=np.float32),
              "X_umap": np.asarray(src.obsm["X_umap"], dtype=np.float32)},
    )
    adata.var = src.var.loc[adata.var_names].copy()
    adata.uns["featurelens_provenance"] = {
        "source": f"scanpy {SCANPY_VERSION} wheel, {MEMBER}",
        "counts": "round(expm1(raw.X) * n_counts / 1e4)",
        "licence": "BSD-3-Clause (scanpy); underlying data 10x Genomics PBMC 68k (Zheng et al. 2017)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp.h5ad")
    adata.write_h5ad(tmp_out, compression="gzip")
    tmp_out.replace(out)
    print(f"wrote {out} ({adata.n_obs} cells × {adata.n_vars} genes, {out.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", type=Path, help="a downloaded scanpy wheel (default: pip download it)")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "pbmc68k_reduced.h5ad")
    args = p.parse_args(argv)
    if args.wheel is None:
        with tempfile.TemporaryDirectory() as tmp:
            build(fetch_wheel(Path(tmp)), args.out)
    else:
        build(args.wheel, args.out)


if __name__ == "__main__":
    main()
