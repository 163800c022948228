"""Peak memory of getting an .h5ad's counts ready for annotation: whole vs streamed.

    python benchmarks/bench_counts_stream.py [--cells 56714] [--genes 13431] [--density 0.07] [--repeat 3]

Writes a synthetic CSR .h5ad (Poisson-ish integer counts at the given density; the paper-scale
default has about 53 million non-zeros), then, each in a fresh process so the operating system's
peak RSS belongs to that step alone:

- **whole** (what annotation did before): ``anndata.read_h5ad`` + a float32 CSC copy;
- **streamed** (now): :func:`core.data.counts.write_csc` into a folder, reading 64 MiB chunks, plus
  :func:`core.data.counts.library_sizes`; then a column slice of the memory-mapped result.

Prints medians of ``--repeat`` runs (time and peak RSS) and the ratio; ``--out FILE.json`` keeps them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_STEP = r"""
import sys, time
sys.path.insert(0, {root!r})
import numpy as np
from core.base.resources import peak_rss_mb
t = time.perf_counter()
if {mode!r} == "whole":
    import anndata as ad, scipy.sparse as sp
    a = ad.read_h5ad({path!r})
    m = sp.csc_matrix(a.X, dtype="float32")
    lib = np.asarray(a.X.sum(axis=1), dtype=np.float64).ravel()
    check = float(m[:, 100:200].sum())
else:
    from core.data.counts import library_sizes, load_csc, write_csc
    shape = write_csc({path!r}, {out!r})
    lib = library_sizes({path!r})
    check = float(load_csc({out!r}, shape)[:, 100:200].sum())
secs = time.perf_counter() - t
print(secs, peak_rss_mb() / 1024, check, float(lib.sum()))
"""


def make_data(path: Path, *, cells: int, genes: int, density: float, seed: int) -> int:
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(0, cells, 5000):  # built in blocks: the generator itself stays small
        n = min(5000, cells - i)
        b = sp.random(n, genes, density=density, format="csr", random_state=rng, dtype=np.float32)
        b.data = np.ceil(-np.log(b.data + 1e-9)).astype(np.float32)  # 1, 2, 3 … counts
        blocks.append(b)
    x = sp.vstack(blocks, format="csr")
    ad.AnnData(X=x).write_h5ad(path)
    return int(x.nnz)


def run_step(mode: str, path: Path, out: Path) -> tuple[float, float, float, float]:
    out.mkdir(parents=True, exist_ok=True)
    code = _STEP.format(root=str(ROOT), mode=mode, path=str(path), out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    secs, rss_gb, check, lib = (float(v) for v in res.stdout.split())
    return secs, rss_gb, check, lib


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=56_714)
    p.add_argument("--genes", type=int, default=13_431)
    p.add_argument("--density", type=float, default=0.07)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        nnz = make_data(tmp / "counts.h5ad", cells=args.cells, genes=args.genes, density=args.density, seed=args.seed)
        print(f"{args.cells:,} cells × {args.genes:,} genes, {nnz:,} non-zeros "
              f"({(tmp / 'counts.h5ad').stat().st_size / 1e9:.2f} GB file), made in {time.perf_counter() - t0:.0f} s")
        runs: dict[str, list] = {"whole": [], "streamed": []}
        for r in range(args.repeat):
            for mode in runs:
                runs[mode].append(run_step(mode, tmp / "counts.h5ad", tmp / f"csc-{mode}-{r}"))
        checks = {m: {(round(c, 3), round(lib, 3)) for _, _, c, lib in v} for m, v in runs.items()}
        assert checks["whole"] == checks["streamed"] and len(checks["whole"]) == 1, checks
    result = {"cells": args.cells, "genes": args.genes, "nnz": nnz, "repeat": args.repeat}
    for mode, v in runs.items():
        result[mode] = {"median_s": statistics.median(x[0] for x in v),
                        "median_peak_rss_gb": statistics.median(x[1] for x in v)}
        print(f"{mode:>9}: {result[mode]['median_s']:.1f} s, peak RSS {result[mode]['median_peak_rss_gb']:.2f} GB "
              f"(median of {args.repeat})")
    result["rss_ratio"] = result["whole"]["median_peak_rss_gb"] / result["streamed"]["median_peak_rss_gb"]
    print(f"peak memory whole / streamed: {result['rss_ratio']:.1f}×; same column sums and library sizes")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
